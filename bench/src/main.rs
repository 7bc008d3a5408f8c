//! Entry point of `fhir-notary-bench`: parses the command line and hands it
//! to the library, where everything else lives so tests exercise it too.

use clap::Parser;

fn main() -> std::process::ExitCode {
    notary_bench::main(notary_bench::Args::parse())
}
