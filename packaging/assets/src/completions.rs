//! Shell completions for the CLI under both its installed names, from its clap grammar.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;
use compartmentctl::args::Cli;

use crate::Asset;

/// The names the package installs the CLI under: the binary and its symlink.
const NAMES: [&str; 2] = ["compartmentctl", "compartment"];

/// Bash, zsh and fish scripts for each name, at the paths `main` documents.
pub fn scripts() -> Vec<Asset> {
    let mut assets = Vec::new();
    for name in NAMES {
        for (shell, path) in [
            (Shell::Bash, format!("completions/bash/{name}")),
            (Shell::Zsh, format!("completions/zsh/_{name}")),
            (Shell::Fish, format!("completions/fish/{name}.fish")),
        ] {
            let mut contents = Vec::new();
            // The script names the command it completes, so each name gets its own.
            clap_complete::generate(shell, &mut Cli::command(), name, &mut contents);
            assets.push(Asset {
                path: PathBuf::from(path),
                contents,
            });
        }
    }
    assets
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn each_name_completes_itself() {
        let scripts = scripts();
        assert_eq!(scripts.len(), 6);
        let bash = |name: &str| {
            scripts
                .iter()
                .find(|a| a.path == Path::new(&format!("completions/bash/{name}")))
                .map(|a| String::from_utf8_lossy(&a.contents).into_owned())
                .unwrap_or_default()
        };
        assert!(bash("compartment").contains("complete -F _compartment "));
        assert!(bash("compartmentctl").contains("complete -F _compartmentctl "));
    }

    #[test]
    fn auth_can_completes_every_permission_key() {
        let zsh = scripts()
            .into_iter()
            .find(|a| a.path == Path::new("completions/zsh/_compartmentctl"))
            .map(|a| String::from_utf8_lossy(&a.contents).into_owned())
            .unwrap_or_default();
        assert!(
            zsh.contains("compartmentctl-auth-command"),
            "no auth can in {zsh}"
        );
        for permission in compartmentctl::wire::Permission::ALL {
            assert!(zsh.contains(permission.key()), "{permission}");
        }
    }
}
