//! The `kiln` command: parses the command line and hands it to `kiln::cli`, which renders every
//! error for people and picks the exit status.

fn main() -> std::process::ExitCode {
    kiln::cli::main()
}
