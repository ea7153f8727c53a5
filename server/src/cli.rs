//! The command line: `serve` and the admin commands, all on the same data directory.

use crate::clock::{SharedClock, SystemClock};
use crate::configuration;
use crate::db::{AttemptId, SittingId, StaffId};
use crate::startup::Application;
use crate::state::AppState;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "proctor-server",
    version,
    about = "CLOE Connect proctoring server"
)]
pub struct Cli {
    /// Configuration file layered over the embedded defaults.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (database, blobs, key store); overrides the configuration.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database: sqlite://PATH or postgres://USER@HOST/DB (default: SQLite in the data directory).
    #[arg(
        long,
        global = true,
        env = "PROCTOR_DATABASE__URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Blob store: s3://BUCKET (endpoint and credentials from [object_store] or
    /// PROCTOR_OBJECT_STORE__*); default: a directory in the data directory.
    #[arg(long, global = true)]
    object_store: Option<String>,
    /// Key-encryption keys directory (default: keys/ in the data directory).
    #[arg(long, global = true)]
    key_dir: Option<PathBuf>,
    /// Run as if it were this moment (RFC 3339, e.g. 2027-02-01T00:00:00Z); time then runs
    /// on from it. For acceptance checks of deadlines; the injected clock of every command.
    #[arg(long, global = true, value_parser = parse_now)]
    now: Option<time::OffsetDateTime>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the public and staff listeners.
    Serve {
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        #[arg(long)]
        staff_listen: Option<std::net::SocketAddr>,
    },
    /// Sittings (exam sessions).
    Sitting {
        #[command(subcommand)]
        command: SittingCommand,
    },
    /// Candidates of a sitting.
    Candidate {
        #[command(subcommand)]
        command: CandidateCommand,
    },
    /// Staff accounts.
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
    /// Attempts (one candidate in one sitting).
    Attempt {
        #[command(subcommand)]
        command: AttemptCommand,
    },
    /// Lets a reviewer or jury member see a sitting's attempts (same as `staff assign`).
    Assign {
        #[arg(long)]
        sitting: SittingId,
        #[arg(long)]
        login: String,
    },
    /// Takes a sitting away from a reviewer or jury member (same as `staff unassign`).
    Unassign {
        #[arg(long)]
        sitting: SittingId,
        #[arg(long)]
        login: String,
    },
    /// Dedicated review terminals (mutual TLS on the staff listener).
    Terminal {
        #[command(subcommand)]
        command: TerminalCommand,
    },
    /// Destruction receipts.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// The jury's decision on a sitting's minutes (PV), as the jury pages record it.
    Pv {
        #[command(subcommand)]
        command: PvCommand,
    },
    /// What is destroyed when, and the sweep that destroys what is due.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum SittingCommand {
    Create {
        #[arg(long = "ref")]
        reference: String,
    },
}

#[derive(Subcommand)]
enum CandidateCommand {
    Add {
        #[arg(long)]
        sitting: SittingId,
        #[arg(long = "ref")]
        reference: String,
    },
}

#[derive(Subcommand)]
enum StaffCommand {
    /// Password from PROCTOR_PASSWORD, or asked on the terminal.
    Add {
        #[arg(long)]
        role: String,
        #[arg(long)]
        login: String,
    },
    /// Lets a reviewer or jury member see a sitting's attempts.
    Assign {
        #[arg(long)]
        login: String,
        #[arg(long)]
        sitting: SittingId,
    },
    /// Takes a sitting away from a reviewer or jury member, effective at their next request.
    Unassign {
        #[arg(long)]
        login: String,
        #[arg(long)]
        sitting: SittingId,
    },
    /// Every account, without secrets.
    List,
    /// Disables an account and ends its sessions.
    Disable {
        #[arg(long)]
        login: String,
    },
    Enable {
        #[arg(long)]
        login: String,
    },
    /// Sets a one-time password (printed once) and ends the account's sessions; the next
    /// login must change it.
    ResetPassword {
        #[arg(long)]
        login: String,
    },
    /// Removes a lost second factor.
    RemoveTotp {
        #[arg(long)]
        login: String,
    },
    /// Requires (or stops requiring) a TOTP second factor for every account.
    RequireTotp {
        #[arg(long, action = clap::ArgAction::Set)]
        required: bool,
    },
}

#[derive(Subcommand)]
enum AttemptCommand {
    /// State, streams, fragments, gaps, missing ranges and the integrity verdict.
    Show { id: AttemptId },
    /// End the attempt, as the exam platform's API does.
    End { id: AttemptId },
    /// Revoke every launch token of the attempt (no new consent or stream).
    RevokeToken { id: AttemptId },
    /// Issue a new launch token, revoking the earlier ones.
    ReissueToken { id: AttemptId },
    /// A short code the candidate types instead of clicking the link (once, 15 minutes).
    LaunchCode { id: AttemptId },
    /// Destroys the recording now, whatever the PV says (the candidate's erasure request,
    /// or consent withdrawn), with a signed receipt. Waits for the lift of a legal hold.
    Erase {
        id: AttemptId,
        #[arg(long)]
        reason: String,
    },
    /// Places a legal hold (a pending proceeding): nothing of the attempt is deleted.
    Hold {
        id: AttemptId,
        #[arg(long)]
        reason: String,
    },
    /// Lifts the legal hold: kept 2 more months from now, or destroyed at once when nothing
    /// else keeps it (a PV validated without contesting it, an erasure asked meanwhile).
    Release { id: AttemptId },
    /// Who accessed the attempt, when, and which part of the recording.
    AccessReport { id: AttemptId },
    /// Writes the recording and its flags encrypted to an age recipient (the data
    /// protection officer's), for the candidate's right of access or portability.
    Export {
        id: AttemptId,
        /// age public key (age1…).
        #[arg(long)]
        recipient: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum PvCommand {
    /// Irreversible: `validated` destroys every recording of the sitting before it returns;
    /// `reservations` keeps the `--contested` attempts 2 months; `refused` keeps all 2 months.
    Decide {
        #[arg(long)]
        sitting: SittingId,
        #[arg(long, value_parser = parse_outcome)]
        outcome: crate::db::PvOutcome,
        /// An attempt the PV contests (with `reservations`; repeat for each).
        #[arg(long, num_args = 1..)]
        contested: Vec<AttemptId>,
        /// Decide although reviews are unsubmitted (recorded in the audit).
        #[arg(long)]
        override_unsubmitted: bool,
        /// The jury member recording it, for the audit and the receipts.
        #[arg(long, default_value = "admin-cli")]
        by: String,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Every attempt not destroyed yet: its rule and when it is destroyed.
    Status,
    /// Destroys what is due now, finishes interrupted blob deletions, destroys spent key
    /// epochs. `--dry-run` lists what is due and changes nothing.
    Run {
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TerminalCommand {
    /// Signs a client certificate for one terminal with the institution's terminal CA
    /// (created in the key directory on first use); writes NAME.pem and NAME.key.
    Issue {
        #[arg(long)]
        name: String,
        /// Where to write the certificate and its key (default: the current directory).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Revokes one terminal's certificate: refused at its next TLS handshake and at the
    /// next request of a connection it already holds.
    Revoke {
        #[arg(long)]
        name: String,
        /// A terminal issued before the list of issued terminals existed.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ReceiptCommand {
    /// Prints the public key that signs destruction receipts (base64), to publish.
    PublicKey,
    /// Checks the log of receipts kept beside the keys: every signature, one chain without
    /// gap or fork, its tip where the head says. Exits non-zero otherwise.
    Log,
    /// Creates the receipt signing key and the pseudonym key in the key directory, once,
    /// before a production server starts (production never creates them on use); keeps
    /// those already there.
    InitKey,
    /// Checks a receipt offline against the published key (`--public-key`, as `receipt
    /// public-key` prints it or `GET /api/public/v1/receipts/public-key` serves it): the
    /// key id, then the signature. Needs no database.
    Verify {
        file: PathBuf,
        #[arg(long)]
        public_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the whole trail and the checkpoints kept outside the
    /// database; names the first bad entry.
    Verify,
    /// Print the trail as JSON lines.
    List,
}

fn print(v: impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = configuration::load(cli.config.as_deref())?;
    if let Some(d) = cli.data_dir {
        settings.server.data_dir = d;
    }
    if let Some(u) = cli.database_url {
        settings.database.url = Some(u);
    }
    if let Some(u) = cli.object_store {
        settings.object_store.url = Some(u);
    }
    if let Some(k) = cli.key_dir {
        settings.server.key_dir = Some(k);
    }
    let clock: SharedClock = match cli.now {
        Some(t) => {
            settings.server.check_clock_override()?;
            Arc::new(crate::clock::ShiftedClock::starting_at(t))
        }
        None => Arc::new(SystemClock),
    };
    if let Command::Receipt {
        command: ReceiptCommand::Verify { file, public_key },
    } = &cli.command
    {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let receipt: protocol::SignedReceipt =
            serde_json::from_str(&text).context("not a destruction receipt")?;
        // The key inside a receipt is the forger's own in a forgery: only a key the
        // verifier already trusts can tell.
        let trusted = public_key.as_deref().context(
            "a trusted public key is needed: --public-key KEY, the server's published key (`receipt public-key`, or GET /api/public/v1/receipts/public-key)",
        )?;
        let key_id = protocol::verify_receipt_pinned(&receipt, trusted)?;
        return print(
            serde_json::json!({ "valid": true, "receipt": receipt.receipt, "signer": receipt.public_key, "key_id": key_id }),
        );
    }
    if let Command::Receipt {
        command: ReceiptCommand::InitKey,
    } = &cli.command
    {
        let keys = settings.keys.open(&settings.server.key_dir())?;
        let (key, created) = keys.init_receipt_signing_key()?;
        let pseudonyms = keys.init_pseudonym_key()?;
        let public = protocol::public_key_text(&key);
        return print(
            serde_json::json!({ "created": created, "key_id": protocol::receipt_key_id(&public)?, "public_key": public,
                "pseudonym_key_created": pseudonyms }),
        );
    }
    if let Command::Serve {
        listen,
        staff_listen,
    } = cli.command
    {
        if let Some(a) = listen {
            settings.server.listen = a;
        }
        if let Some(a) = staff_listen {
            settings.server.staff_listen = a;
        }
        let app = Application::build(settings, clock).await?;
        let scheme = app.scheme();
        print(serde_json::json!({
            "event": "listening",
            "public": format!("{scheme}://{}", app.public_addr()),
            "staff": format!("{scheme}://{}", app.staff_addr()),
            "webrtc": app.webrtc_addr().map(|a| a.to_string()),
        }))?;
        tracing::info!("serving");
        return app.run_until_stopped().await;
    }
    let key_dir = settings.server.key_dir();
    let app = AppState::open(settings, clock).await?;
    let result: anyhow::Result<()> = async {
        match cli.command {
            Command::Serve { .. } => unreachable!("handled above"),
            Command::Sitting { command: SittingCommand::Create { reference } } => print(app.enrolment.create_sitting(&reference, "admin-cli").await?.value)?,
            Command::Candidate { command: CandidateCommand::Add { sitting, reference } } => {
                let r = app.enrolment.add_candidate(sitting, &reference, "admin-cli").await?.value;
                print(serde_json::json!({ "attempt_id": r.attempt_id, "launch_token": r.launch_token, "browser_link": r.browser_link, "token_expires_at": r.token_expires_at }))?
            }
            Command::Staff { command: StaffCommand::Add { role, login } } => {
                let password = match std::env::var("PROCTOR_PASSWORD") {
                    Ok(p) => p,
                    Err(_) => rpassword_prompt()?,
                };
                let id = app.accounts.add_staff(&login, &role, &password).await?;
                print(serde_json::json!({ "staff_id": id, "login": login, "role": role }))?
            }
            Command::Staff { command: StaffCommand::Unassign { login, sitting } } | Command::Unassign { login, sitting } => {
                app.accounts.unassign_sitting(&login, sitting, "admin-cli").await?;
                print(serde_json::json!({ "login": login, "sitting_id": sitting, "assigned": false }))?
            }
            Command::Staff { command: StaffCommand::Assign { login, sitting } } | Command::Assign { login, sitting } => {
                app.accounts.assign_sitting(&login, sitting, "admin-cli").await?;
                print(serde_json::json!({ "login": login, "sitting_id": sitting, "assigned": true }))?
            }
            Command::Staff { command: StaffCommand::List } => {
                let admin = crate::identity::StaffIdentity { id: StaffId::from(uuid::Uuid::nil()), login: "admin-cli".into(), role: crate::domain::Role::Admin, pending: None, terminal: None };
                print(app.accounts.list_staff(&admin).await?)?
            }
            Command::Staff { command: StaffCommand::Disable { login } } => {
                app.accounts.set_staff_disabled("admin-cli", &login, true).await?;
                print(serde_json::json!({ "login": login, "disabled": true }))?
            }
            Command::Staff { command: StaffCommand::Enable { login } } => {
                app.accounts.set_staff_disabled("admin-cli", &login, false).await?;
                print(serde_json::json!({ "login": login, "disabled": false }))?
            }
            Command::Staff { command: StaffCommand::ResetPassword { login } } => {
                let p = app.accounts.reset_password_by_operator(&login).await?;
                print(serde_json::json!({ "login": login, "temporary_password": p }))?
            }
            Command::Staff { command: StaffCommand::RemoveTotp { login } } => {
                app.accounts.remove_totp("admin-cli", &login).await?;
                print(serde_json::json!({ "login": login, "totp": false }))?
            }
            Command::Staff { command: StaffCommand::RequireTotp { required } } => {
                app.accounts.set_totp_required("admin-cli", required).await?;
                print(serde_json::json!({ "totp_required": required }))?
            }
            Command::Attempt { command: AttemptCommand::Show { id } } => print(app.review.report_for_operator(id).await?)?,
            Command::Attempt { command: AttemptCommand::End { id } } => print(app.enrolment.end_attempt(id, "admin-cli").await?)?,
            Command::Attempt { command: AttemptCommand::RevokeToken { id } } => {
                print(serde_json::json!({ "attempt_id": id, "revoked": app.enrolment.revoke_launch_tokens(id, "admin-cli").await? }))?
            }
            Command::Attempt { command: AttemptCommand::LaunchCode { id } } => print(app.enrolment.issue_launch_code(id, "admin-cli").await?)?,
            Command::Attempt { command: AttemptCommand::ReissueToken { id } } => {
                let r = app.enrolment.reissue_launch_token(id, "admin-cli").await?;
                print(serde_json::json!({ "attempt_id": r.attempt_id, "launch_token": r.launch_token, "browser_link": r.browser_link, "token_expires_at": r.token_expires_at }))?
            }
            Command::Attempt { command: AttemptCommand::Erase { id, reason } } => {
                let receipt = app.retention.erase_attempt("admin-cli", id, &reason).await?;
                app.retention.purge_destroyed().await?;
                print(serde_json::json!({ "attempt_id": id, "destroyed": receipt.is_some(), "receipt": receipt,
                    "retention": app.policy.attempt_retention(id).await? }))?
            }
            Command::Attempt { command: AttemptCommand::Hold { id, reason } } => {
                app.retention.hold_attempt("admin-cli", id, &reason).await?;
                print(app.policy.attempt_retention(id).await?)?
            }
            Command::Attempt { command: AttemptCommand::Release { id } } => {
                app.retention.lift_hold("admin-cli", id).await?;
                print(app.policy.attempt_retention(id).await?)?
            }
            Command::Attempt { command: AttemptCommand::AccessReport { id } } => print(app.retention.access_report("admin-cli", id).await?)?,
            Command::Attempt { command: AttemptCommand::Export { id, recipient, out } } => print(app.retention.export_attempt("admin-cli", id, &recipient, &out).await?)?,
            Command::Pv { command: PvCommand::Decide { sitting, outcome, contested, override_unsubmitted, by } } => {
                let r = app.retention.decide_pv(&by, sitting, crate::retention::PvRequest { outcome, contested, override_unsubmitted, decided_by: None }).await?;
                // No worker runs beside a command: the blobs go before it returns.
                app.retention.purge_destroyed().await?;
                print(r)?
            }
            Command::Retention { command: RetentionCommand::Status } => print(app.policy.retention_overview().await?)?,
            Command::Retention { command: RetentionCommand::Run { dry_run } } => print(app.retention.sweep(dry_run).await?)?,
            Command::Receipt { command: ReceiptCommand::Log } => {
                let log = app.retention.receipt_log()?;
                let whole = log.whole;
                print(log)?;
                anyhow::ensure!(whole, "the receipt log is not whole: see invalid, gaps, forks and head above");
            }
            Command::Receipt { command: ReceiptCommand::PublicKey } => {
                let key = app.retention.receipt_public_key()?;
                print(serde_json::json!({ "key_id": protocol::receipt_key_id(&key)?, "public_key": key }))?
            }
            Command::Receipt { command: ReceiptCommand::Verify { .. } | ReceiptCommand::InitKey } => unreachable!("handled above"),
            Command::Terminal { command: TerminalCommand::Issue { name, out } } => {
                let issued = crate::terminals::issue(&key_dir, &name, &out)?;
                app.audit.record("admin-cli", "terminal_issued", None, serde_json::json!({ "name": name, "fingerprint": issued.fingerprint })).await?;
                print(serde_json::json!({ "name": name, "certificate": issued.cert_path, "key": issued.key_path, "fingerprint": issued.fingerprint,
                    "ca": key_dir.join(crate::terminals::CA_CERT) }))?
            }
            Command::Terminal { command: TerminalCommand::Revoke { name, force } } => {
                let newly = crate::terminals::revoke(&key_dir, &name, force)?;
                if newly {
                    app.audit.record("admin-cli", "terminal_revoked", None, serde_json::json!({ "name": name })).await?;
                }
                print(serde_json::json!({ "name": name, "revoked": true, "already": !newly }))?
            }
            Command::Audit { command } => match command {
                AuditCommand::Verify => {
                    let trusted = app.retention.receipt_public_key()?;
                    let v = app.audit.verify_kept(&trusted).await??;
                    print(serde_json::json!({ "entries": v.entries, "checkpoints": v.checkpoints, "chain": "intact",
                        "retired_up_to": v.retired_up_to }))?
                }
                AuditCommand::List => {
                    // Page by page: a long trail is printed, never held.
                    let mut after = 0;
                    loop {
                        let page = app.audit.page(after, 5_000).await?;
                        let Some(last) = page.last() else { break };
                        after = last.seq;
                        for e in &page {
                            println!("{}", serde_json::to_string(&crate::audit::EntryView::from(e))?);
                        }
                    }
                }
            },
        }
        Ok(())
    }
    .await;
    result
}

fn parse_now(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("--now wants an RFC 3339 time (2027-02-01T00:00:00Z): {e}"))
}

fn parse_outcome(s: &str) -> Result<crate::db::PvOutcome, String> {
    crate::db::PvOutcome::parse(s)
        .map_err(|_| "the outcome is validated, reservations or refused".into())
}

fn rpassword_prompt() -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    eprint!("Password: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
