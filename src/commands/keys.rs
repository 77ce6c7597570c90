//! `cairn keys generate`.

use policy_engine::bundle::keys;

use crate::cli::KeysCommand;
use crate::exit::{CliResult, Outcome};

pub fn run(cmd: KeysCommand) -> CliResult {
    match cmd {
        KeysCommand::Generate { out, format } => {
            let (private, public, id) = keys::generate(&out)?;
            if format == crate::cli::OutputFormat::Json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "key_id": id,
                        "private_key": private.display().to_string(),
                        "public_key": public.display().to_string(),
                    })
                );
                return Ok(Outcome::Success);
            }
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
