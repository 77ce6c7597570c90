//! `cairn keys generate`.

use policy_engine::bundle::keys;

use crate::cli::KeysCommand;
use crate::exit::{CliResult, Outcome};

pub fn run(cmd: KeysCommand) -> CliResult {
    match cmd {
        KeysCommand::Generate { out } => {
            let (private, public, id) = keys::generate(&out)?;
            outln!("generated Ed25519 key {id}");
            outln!(
                "  private key: {} (mode 0600; keep it secret)",
                private.display()
            );
            outln!("  public key:  {}", public.display());
            Ok(Outcome::Success)
        }
    }
}
