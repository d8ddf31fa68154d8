//! Real engines for tests: a PostgreSQL cluster ([`postgres`]) and an S3-compatible
//! server ([`s3`]) on loopback.
//!
//! `scripts/test.sh` starts one of each for the whole run and exports their addresses
//! (`WHARF_TEST_POSTGRES`, `WHARF_TEST_S3`); a test process started without them
//! starts its own instance, stopped when the process exits. Each test asks for a fresh
//! database or bucket, so tests never see each other's data.

mod daemon;
pub mod postgres;
pub mod s3;
