//! The `neurogen` binary: everything happens in [`neurogen_cli::run`], after
//! [`neurogen_cli::reexec_with_allocator_settings`].

fn main() {
    neurogen_cli::reexec_with_allocator_settings();
    std::process::exit(neurogen_cli::run(std::env::args_os()));
}
