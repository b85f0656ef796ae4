#![no_std]
// This file exists so imds-agent can list this crate as a build-dependency.
