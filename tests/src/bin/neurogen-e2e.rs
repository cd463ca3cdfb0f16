//! The `neurogen` command line, built inside the test package.
//!
//! `cargo test` builds a package's binaries for its own integration tests and hands their paths
//! over in `CARGO_BIN_EXE_*`; it does not build another package's binary. This is the same
//! entry point the shipped `neurogen` binary's `main` calls, so the tests drive the real thing.

fn main() {
    neurogen_cli::reexec_with_allocator_settings();
    std::process::exit(neurogen_cli::run(std::env::args_os()));
}
