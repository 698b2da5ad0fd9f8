//! Helpers shared by the e2e tests.
