//! Entry point of `compartmentctl`, also installed as `compartment`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
