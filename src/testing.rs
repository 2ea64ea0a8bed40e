//! Test support shared by the unit tests and the integration tests
//! (`tests/it`, through the `test-util` feature): a real PostgreSQL server
//! for the fleet-mode store.

pub mod postgres;
