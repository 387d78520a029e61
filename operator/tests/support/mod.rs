//! Helpers of the operator's integration tests, each in one place: the API server seen through
//! kubectl ([`cluster`]), the operator binary as a process ([`operator`]), the rules a reshard
//! must follow ([`reshard`]), a TCP proxy a test can cut to partition one operator from the
//! API server ([`partition`]), and for the end-to-end test a kubelet that runs Deployments' pods
//! as local processes ([`kubelet`]) and a recorder of the quotes published on Redis ([`tape`]).

// Every test binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod cluster;
pub mod kubelet;
pub mod operator;
pub mod partition;
pub mod reshard;
pub mod tape;

/// `target/<profile>/quotestream-worker`, next to this test binary's `deps/` directory (the
/// worker is not a dependency of this crate: `cargo build -p quotestream-worker` first when
/// running one test alone).
pub fn worker_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|profile| profile.join("quotestream-worker"));
    match bin {
        Some(bin) if bin.is_file() => bin,
        _ => {
            panic!("build the worker first: cargo build -p quotestream-worker (looked for {bin:?})")
        }
    }
}
