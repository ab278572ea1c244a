//! Shell completions for the CLI under both its installed names: each a registration that
//! calls the installed CLI back at every TAB (clap_complete's dynamic completion), so that
//! commands and flags come from its grammar and `--org` from the daemon's organizations.

use std::path::PathBuf;

use clap_complete::Shell;

use crate::Asset;

/// The names the package installs the CLI under: the binary and its symlink.
const NAMES: [&str; 2] = ["compartmentctl", "compartment"];

/// Bash, zsh and fish scripts for each name, at the paths `main` documents.
pub fn scripts() -> std::io::Result<Vec<Asset>> {
    let mut assets = Vec::new();
    for name in NAMES {
        for (shell, path) in [
            (Shell::Bash, format!("completions/bash/{name}")),
            (Shell::Zsh, format!("completions/zsh/_{name}")),
            (Shell::Fish, format!("completions/fish/{name}.fish")),
        ] {
            // The script names the command it completes, so each name gets its own.
            let contents = compartmentctl::complete::registration(shell, name)?;
            assets.push(Asset {
                path: PathBuf::from(path),
                contents,
            });
        }
    }
    Ok(assets)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::path::Path;

    #[test]
    fn each_name_completes_itself() {
        let scripts = scripts().unwrap();
        assert_eq!(scripts.len(), 6);
        let bash = |name: &str| {
            scripts
                .iter()
                .find(|a| a.path == Path::new(&format!("completions/bash/{name}")))
                .map(|a| String::from_utf8_lossy(&a.contents).into_owned())
                .unwrap_or_default()
        };
        assert!(bash("compartment").contains("-F _clap_complete_compartment compartment\n"));
        assert!(bash("compartment").contains("\"compartment\" -- \"${words[@]}\""));
        assert!(
            bash("compartmentctl").contains("-F _clap_complete_compartmentctl compartmentctl\n")
        );
    }
}
