//! Access policies: the model (`model`), the raw YAML schema (`raw`), loading
//! and compiling YAML files into the model (`load`), routing a request to an
//! app (`route`), evaluating policies (`eval`), explaining a decision
//! (`explain`) and hot reload (`reload`).
//!
//! Everything except `reload` is pure: no I/O beyond reading the policy files
//! in `load`, so it unit-tests and benches without sockets.

pub mod eval;
pub mod explain;
pub mod ip_range;
pub mod load;
pub mod model;
pub mod raw;
pub mod reload;
pub mod route;

pub use eval::{evaluate, policy_matches, Outcome, Phase, RequestView, Subject};
pub use explain::{check_table, explain, ExplainError, ExplainSubject};
pub use load::{
    compile_sources, compile_sources_cached, load_path, load_path_cached, ParsedFiles, PolicyError,
    PolicyErrors,
};
pub use model::{App, Decision, HostPattern, Policy, PolicySet, Selector, ServiceToken, Upstream};
pub use reload::{spawn_watcher, PolicyHandle};
