//! The one integration-test binary: protocol golden bytes and bad input against a live
//! root, and the SCENARIOS.md acceptance scenarios in headless mode with real processes.

mod attach;
mod console;
mod dumps;
mod entry_points;
mod hardening;
mod harness;
mod protocol;
mod python;
mod queue;
mod ray;
mod remote;
mod scenarios;
