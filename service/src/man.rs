//! A binary's man page, rendered by clap_mangen from the same clap definition that parses its
//! command line. The binaries print it for a hidden `--man` flag; `scripts/package.sh` puts the
//! output in the package.

use std::io::{self, Write};
use std::process::ExitCode;

/// Writes the page of `cmd` (roff) to stdout, in `section` (8 for the daemons and the tool).
pub fn print(cmd: clap::Command, section: &str) -> ExitCode {
    let man = clap_mangen::Man::new(cmd).section(section);
    let mut page = Vec::new();
    let written = man
        .render(&mut page)
        .and_then(|()| io::stdout().write_all(&page));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write the man page: {e}");
            ExitCode::FAILURE
        }
    }
}
