//! Entry point of `compartmentctl`, also installed as `compartment`.

#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
