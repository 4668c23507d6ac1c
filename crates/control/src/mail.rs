//! Outgoing email: a pluggable [`Sender`] and the outbox [`dispatch`]er.
//!
//! - [`LogSender`] (default) writes recipient and subject to the log — never
//!   the body, which may hold a secret link.
//! - [`ConsoleSender`] (development mode without SMTP) prints each email's
//!   link to standard output (`verify ada@x.com: http://…/verify-email?token=…`)
//!   so a newcomer can click through without a mail server.
//! - [`SmtpSender`] speaks plain SMTP to `TANDEM_SMTP_URL` (`smtp://host:port`),
//!   e.g. a local MTA that relays with TLS and authentication.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::state::AppState;
use crate::store::outbox;

/// One email to send.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The outbox kind (`invite`, `verify-email`, ...).
    pub kind: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub body: String,
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Delivers email. Implementations must be safe to call from several tasks.
pub trait Sender: Send + Sync {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a>;
    fn name(&self) -> &'static str;
}

pub struct LogSender;

impl Sender for LogSender {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async move {
            tracing::info!(
                to = %mail.to,
                subject = %mail.subject,
                "email not sent: no TANDEM_SMTP_URL configured (log sender)"
            );
            Ok(())
        })
    }

    fn name(&self) -> &'static str {
        "log"
    }
}

/// Development mode: prints links to the console (the body is shown to the
/// person running `tandem dev`, who is the only user of their laptop).
pub struct ConsoleSender;

impl ConsoleSender {
    /// The line printed for `mail`: `verify ada@x.com: http://…`.
    pub fn line(mail: &Mail) -> String {
        let what = match mail.kind.as_str() {
            "verify-email" => "verify",
            other => other,
        };
        let link = mail
            .body
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or("(no link)");
        format!("{what} {}: {link}", mail.to)
    }
}

impl Sender for ConsoleSender {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async move {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", Self::line(mail)).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())
        })
    }

    fn name(&self) -> &'static str {
        "console"
    }
}

pub struct SmtpSender {
    /// `host:port`.
    addr: String,
}

impl SmtpSender {
    pub fn from_url(url: &str) -> Result<SmtpSender, String> {
        let rest = url
            .strip_prefix("smtp://")
            .ok_or("TANDEM_SMTP_URL must look like smtp://HOST:PORT")?;
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('@') || addr.contains('/') {
            return Err("TANDEM_SMTP_URL must look like smtp://HOST:PORT".into());
        }
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:25")
        };
        Ok(SmtpSender { addr })
    }
}

/// The address part of `Name <addr>` or a bare address.
fn address(s: &str) -> &str {
    match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s.trim(),
    }
}

/// Refuses header injection: addresses and subjects are single lines.
fn one_line(s: &str) -> Result<&str, String> {
    if s.contains(['\r', '\n']) {
        Err("line breaks in a header".into())
    } else {
        Ok(s)
    }
}

async fn expect(reader: &mut BufReader<TcpStream>, code: &str) -> Result<(), String> {
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("SMTP server closed the connection".into());
        }
        if !line.starts_with(code) {
            return Err(format!("SMTP server answered {:?}", line.trim_end()));
        }
        // `250-...` continues a multi-line reply; `250 ...` ends it.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}

async fn command(reader: &mut BufReader<TcpStream>, line: &str, code: &str) -> Result<(), String> {
    reader
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    expect(reader, code).await
}

impl SmtpSender {
    async fn deliver(&self, mail: &Mail) -> Result<(), String> {
        let from = one_line(address(&mail.from))?;
        let to = one_line(address(&mail.to))?;
        let subject = one_line(&mail.subject)?;
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        let mut r = BufReader::new(stream);
        expect(&mut r, "220").await?;
        command(&mut r, "EHLO tandem", "250").await?;
        command(&mut r, &format!("MAIL FROM:<{from}>"), "250").await?;
        command(&mut r, &format!("RCPT TO:<{to}>"), "25").await?;
        command(&mut r, "DATA", "354").await?;
        let mut data = format!(
            "From: {}\r\nTo: {}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
            one_line(&mail.from)?,
            to
        );
        for line in mail.body.lines() {
            // Dot-stuffing: a line starting with '.' gets another one.
            if line.starts_with('.') {
                data.push('.');
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        data.push_str(".\r\n");
        r.get_mut()
            .write_all(data.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        expect(&mut r, "250").await?;
        let _ = command(&mut r, "QUIT", "221").await;
        Ok(())
    }
}

impl Sender for SmtpSender {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async move {
            tokio::time::timeout(Duration::from_secs(30), self.deliver(mail))
                .await
                .map_err(|_| "SMTP timed out".to_string())?
        })
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}

/// The sender the configuration asks for: SMTP when configured, else the
/// console in development mode and the log otherwise.
pub fn sender(smtp_url: Option<&str>, dev: bool) -> Result<Arc<dyn Sender>, String> {
    Ok(match smtp_url {
        Some(url) => Arc::new(SmtpSender::from_url(url)?),
        None if dev => Arc::new(ConsoleSender),
        None => Arc::new(LogSender),
    })
}

/// How long a claimed email is reserved for the replica that claimed it.
const LEASE_MS: i64 = 60_000;

/// Sends due outbox rows until shutdown: woken when a row is written here,
/// and every `TANDEM_OUTBOX_POLL_MS` for rows written by other replicas or
/// due for a retry.
pub async fn dispatch(state: Arc<AppState>) {
    let every = Duration::from_millis(state.config.outbox_poll_ms.max(10));
    loop {
        let woken = state.outbox_wake.notified();
        if let Err(e) = dispatch_once(&state).await {
            tracing::warn!(error = %e, "outbox dispatch failed; will retry");
        }
        if !state.nap(woken, every).await {
            return;
        }
    }
}

async fn dispatch_once(state: &Arc<AppState>) -> Result<(), crate::error::ApiError> {
    // One row per claim: each is sent well within its lease.
    while let Some(row) = state.db(|c| outbox::claim_one(c, LEASE_MS)).await? {
        let mail = Mail {
            kind: row.kind.clone(),
            from: state.config.mail_from.clone(),
            to: row.recipient.clone(),
            subject: row.subject.clone(),
            body: row.body.clone(),
        };
        match state.mailer.send(&mail).await {
            Ok(()) => {
                state.metrics.emails_sent.inc();
                tracing::info!(kind = %row.kind, sender = state.mailer.name(), "email sent");
                state.db(move |c| outbox::mark_sent(c, &row.id)).await?;
            }
            Err(e) => {
                state.metrics.email_failures.inc();
                tracing::warn!(kind = %row.kind, attempts = row.attempts + 1, error = %e, "email failed; will retry");
                state.db(move |c| outbox::mark_failed(c, &row, &e)).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_and_addresses() {
        assert_eq!(
            SmtpSender::from_url("smtp://mail:2525").unwrap().addr,
            "mail:2525"
        );
        assert_eq!(SmtpSender::from_url("smtp://mail").unwrap().addr, "mail:25");
        assert!(SmtpSender::from_url("http://mail").is_err());
        assert!(SmtpSender::from_url("smtp://user:pw@mail").is_err());
        assert_eq!(address("Tandem <noreply@x.org>"), "noreply@x.org");
        assert_eq!(address(" a@b.c "), "a@b.c");
        assert!(one_line("a\r\nRCPT TO:<evil>").is_err());
    }

    #[test]
    fn console_lines_show_the_link() {
        let mail = Mail {
            kind: "verify-email".into(),
            from: "x".into(),
            to: "ada@x.com".into(),
            subject: "s".into(),
            body: "Hello,\n\nhttp://127.0.0.1:8080/verify-email?token=abc\n\nBye.".into(),
        };
        assert_eq!(
            ConsoleSender::line(&mail),
            "verify ada@x.com: http://127.0.0.1:8080/verify-email?token=abc"
        );
    }
}
