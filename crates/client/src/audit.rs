//! `tandem audit verify`: checks an org's audit chain straight from the
//! database (`--database-url`, or `TANDEM_DATABASE_URL`), or from an NDJSON
//! export (`--file`), without asking a control server — the point is to
//! check the log even when the server cannot be trusted. Prints the result
//! as JSON (`{ok, checked, firstBrokenSeq?, headSeq, headHash}`) and exits
//! with status 1 when the chain is broken.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use tandem_control::store::audit::{self, Checker};
use tandem_protocol::admin::{AuditEntry, AuditVerification};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute an org's hash chain and report the first broken entry.
    Verify {
        /// The org whose log to check (with --file: the org the export must be of).
        #[arg(long)]
        org: String,
        /// The database to read (not needed with --file).
        #[arg(long, env = "TANDEM_DATABASE_URL")]
        database_url: Option<String>,
        /// Check an NDJSON export (`GET /orgs/{id}/audit/export`) instead; `-` for stdin.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// Runs the command; `Ok(true)` when the chain verified.
pub fn main(cmd: AuditCommand) -> anyhow::Result<bool> {
    let AuditCommand::Verify {
        org,
        database_url,
        file,
    } = cmd;
    let result = match (file, database_url) {
        (Some(path), _) => verify_file(&org, &path)?,
        (None, Some(url)) => verify_db(&org, &url)?,
        (None, None) => anyhow::bail!("give --database-url (or TANDEM_DATABASE_URL) or --file"),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(result.ok)
}

/// Verifies the chain of `org` in the database at `url` (no migrations run).
pub fn verify_db(org: &str, url: &str) -> anyhow::Result<AuditVerification> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        anyhow::ensure!(
            std::path::Path::new(path).exists(),
            "no SQLite database at {path}"
        );
    }
    let mut conn = tandem_control::db::open(url)?;
    audit::verify(&mut conn, org).context("reading the audit log")
}

/// Verifies an NDJSON export of `org`'s log, line by line.
pub fn verify_file(org: &str, path: &PathBuf) -> anyhow::Result<AuditVerification> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut checker = Checker::default();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: AuditEntry = serde_json::from_str(&line)
            .with_context(|| format!("line {} is not an audit entry", n + 1))?;
        anyhow::ensure!(
            entry.org_id == org,
            "line {} is of org {}, not {org}",
            n + 1,
            entry.org_id
        );
        if !checker.check(&entry) {
            break;
        }
    }
    Ok(checker.result())
}
