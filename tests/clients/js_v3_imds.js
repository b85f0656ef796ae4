#!/usr/bin/env node
// @aws-sdk/credential-provider-imds (JavaScript v3) `fromInstanceMetadata()`: token PUT,
// then the role name and its credentials with the token. Prints the access key id.
'use strict';

const { fromInstanceMetadata } = require('@aws-sdk/credential-provider-imds');

fromInstanceMetadata({ timeout: 5000, maxRetries: 0 })()
  .then((credentials) => console.log(credentials.accessKeyId))
  .catch((err) => {
    console.error(`fromInstanceMetadata failed: ${err.name}: ${err.message}`);
    process.exit(1);
  });
