//! The candidate checks their own destruction receipt, offline, against the key the
//! server publishes: the one given on the command line, or the one this computer was
//! installed with. The key inside a receipt is never trusted by itself: a forger signs
//! with theirs and puts it there.

use crate::messages::receipt_text as text;
use std::path::Path;
use std::process::ExitCode;

/// Where an installation may place the deployment's published key.
pub const INSTALLED_KEY: &str = "/etc/cloe-connect/receipt-key.pub";

/// Checks the receipt in `file`; 0 when valid, 1 when not, 2 when it cannot be checked.
pub fn verify(
    file: &Path,
    public_key: Option<&str>,
    json: bool,
) -> Result<ExitCode, (u8, anyhow::Error)> {
    let trusted = match public_key {
        Some(k) => k.trim().to_owned(),
        None => match std::fs::read_to_string(INSTALLED_KEY) {
            Ok(k) => k.trim().to_owned(),
            Err(_) => return Err((2, anyhow::anyhow!("{}", text().key_needed))),
        },
    };
    let receipt: protocol::SignedReceipt = std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| {
            (
                2,
                anyhow::anyhow!("{} ({})", text().unreadable, file.display()),
            )
        })?;
    let checked = protocol::verify_receipt_pinned(&receipt, &trusted);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "valid": checked.is_ok(),
                "key_id": checked.as_ref().ok(),
                "error": checked.as_ref().err().map(ToString::to_string),
                "receipt": receipt.receipt,
            })
        );
    } else {
        match &checked {
            Ok(key_id) => println!(
                "{}",
                text()
                    .valid
                    .replace("{attempt}", &receipt.receipt.attempt_id.to_string())
                    .replace("{date}", &receipt.receipt.destroyed_at)
                    .replace("{reason}", &receipt.receipt.reason)
                    .replace("{key_id}", key_id)
            ),
            Err(e) => eprintln!("{} ({e})", text().invalid),
        }
    }
    Ok(if checked.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
