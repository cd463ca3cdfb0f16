//! The `neurogen` binary: everything happens in [`neurogen_cli::run`].

fn main() {
    std::process::exit(neurogen_cli::run(std::env::args_os()));
}
