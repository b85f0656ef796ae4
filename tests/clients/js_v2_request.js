#!/usr/bin/env node
// aws-sdk (JavaScript v2) `MetadataService.request()` without a token, as old code does.
// Usage: node js_v2_request.js MODULE [PATH]
//   MODULE: `aws-sdk` (2.1693.0) or `aws-sdk-2.700.0` (npm alias), from ./node_modules.
// Prints the response body; exits 1 on error.
'use strict';

const moduleName = process.argv[2] || 'aws-sdk';
const path = process.argv[3] || '/latest/meta-data/instance-id';
const AWS = require(moduleName);

const service = new AWS.MetadataService({
  endpoint: 'http://169.254.169.254',
  httpOptions: { timeout: 5000 },
  maxRetries: 0,
});
service.request(path, (err, data) => {
  if (err) {
    console.error(`MetadataService.request failed: ${err.code || ''} ${err.message}`);
    process.exit(1);
  }
  console.log(data);
});
