//! Emails through an SMTP relay: invitations and email verification links. Plain text, saying
//! who sends it, what the link is for and until when it works; nothing else is sent, and the
//! link is never logged.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::api::instance::{SmtpSecurity, SmtpSpec};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the address '{0}' is not a valid email address")]
    Address(String),
    #[error("the SMTP relay {host} refused or failed: {reason}. Check spec.smtp on the instance and the relay")]
    Relay { host: String, reason: String },
}

/// The default least time between two emails to one address, whichever object asks
/// (`--mail-pace`): LibreChat's own resend allows 2 in 2 minutes, and a trigger set in a loop,
/// or an object re-created in a loop, must not turn the instance's relay into a mailer.
pub const PACE: Duration = Duration::from_secs(60);

/// How long one email may take, from the relay's address lookup to its last answer. lettre's
/// own timeout bounds only the TCP connect: a relay that accepts and then never answers (a
/// tarpit, a hung TLS handshake) would hold a reconcile until its own deadline.
const SEND_DEADLINE: Duration = Duration::from_secs(60);

/// How a send ended that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The relay accepted the email.
    Confirmed,
    /// The relay did not answer within the deadline: the email may or may not have gone (a
    /// slow relay may deliver it and answer late). It counts as sent, so it is never sent
    /// twice; the caller says it is unconfirmed.
    Unconfirmed,
}

/// Which addresses were mailed within the pace by this process (one leader sends).
pub struct Pacer {
    pace: Duration,
    last: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new(PACE)
    }
}

impl Pacer {
    pub fn new(pace: Duration) -> Self {
        Pacer {
            pace,
            last: Default::default(),
        }
    }

    /// The least time between two emails to one address.
    pub fn pace(&self) -> Duration {
        self.pace
    }

    /// Takes `address`'s turn now, or says how long until it has one. Checked and taken under
    /// one lock: reconciles running at once for tagged addresses of one inbox get one turn
    /// between them, not one each. The turn is given back when dropped before [`Turn::used`]
    /// (a handover that failed, or never happened, does not hide its error behind the pace).
    pub fn reserve(&self, address: &str) -> Result<Turn<'_>, Duration> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        last.retain(|_, at| now.duration_since(*at) < self.pace);
        let key = inbox(address);
        if let Some(at) = last.get(&key) {
            return Err(self.pace - now.duration_since(*at));
        }
        last.insert(key.clone(), now);
        Ok(Turn {
            pacer: self,
            key,
            at: now,
            used: false,
        })
    }
}

/// One inbox's turn to be mailed, taken by [`Pacer::reserve`].
pub struct Turn<'a> {
    pacer: &'a Pacer,
    key: String,
    at: std::time::Instant,
    used: bool,
}

impl Turn<'_> {
    /// The email was handed to the relay: the turn counts from now.
    pub fn used(mut self) {
        self.used = true;
        let mut last = self.pacer.last.lock().unwrap_or_else(|p| p.into_inner());
        last.insert(self.key.clone(), std::time::Instant::now());
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let mut last = self.pacer.last.lock().unwrap_or_else(|p| p.into_inner());
        // Only the turn this took: one taken since by another send stays.
        if last.get(&self.key) == Some(&self.at) {
            last.remove(&self.key);
        }
    }
}

/// The inbox an address reaches, as the pace counts it: without letter case, and without a
/// `+tag` (most mail services deliver `someone+1@` and `someone+2@` to `someone@`, so a
/// tenant's accounts under tagged addresses share one pace and cannot flood one inbox).
fn inbox(address: &str) -> String {
    let address = address.to_lowercase();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let base = local.split_once('+').map_or(local, |(base, _)| base);
            format!("{base}@{domain}")
        }
        None => address,
    }
}

/// What goes into an invitation.
pub struct Invitation<'a> {
    pub to: &'a str,
    pub link: &'a str,
    pub expires_at: &'a str,
    pub site: &'a str,
}

/// Hands the invitation to the relay.
pub async fn send_invitation(
    smtp: &SmtpSpec,
    credentials: Option<(String, String)>,
    invitation: &Invitation<'_>,
) -> Result<Delivery, MailError> {
    let subject = format!("You are invited to LibreChat at {}", invitation.site);
    send(smtp, credentials, invitation.to, subject, body(invitation)).await
}

/// What goes into a verification email.
pub struct Verification<'a> {
    pub to: &'a str,
    pub name: &'a str,
    pub link: &'a str,
    pub expires_at: &'a str,
}

/// Hands LibreChat's email verification message to the relay (LibreChat's own subject, its
/// template's content in plain text).
pub async fn send_verification(
    smtp: &SmtpSpec,
    credentials: Option<(String, String)>,
    verification: &Verification<'_>,
) -> Result<Delivery, MailError> {
    let body = verification_body(verification);
    send(
        smtp,
        credentials,
        verification.to,
        "Verify your email".into(),
        body,
    )
    .await
}

fn verification_body(v: &Verification<'_>) -> String {
    format!(
        "Hi {name},\n\n\
         please verify your email address for LibreChat with this link (it works until \
         {expires}):\n\n\
         {link}\n\n\
         If you did not create an account, ignore this email.\n",
        name = v.name,
        expires = v.expires_at,
        link = v.link,
    )
}

async fn send(
    smtp: &SmtpSpec,
    credentials: Option<(String, String)>,
    to: &str,
    subject: String,
    body: String,
) -> Result<Delivery, MailError> {
    let mail = Mail { to, subject, body };
    send_within(SEND_DEADLINE, smtp, credentials, mail).await
}

/// One email's recipient and content.
struct Mail<'a> {
    to: &'a str,
    subject: String,
    body: String,
}

async fn send_within(
    deadline: Duration,
    smtp: &SmtpSpec,
    credentials: Option<(String, String)>,
    Mail { to, subject, body }: Mail<'_>,
) -> Result<Delivery, MailError> {
    let relay_error = |reason: String| MailError::Relay {
        host: smtp.host.clone(),
        reason: crate::librechat::error::redact(&reason),
    };
    let message = Message::builder()
        .from(
            smtp.from
                .parse()
                .map_err(|_| MailError::Address(smtp.from.clone()))?,
        )
        .to(to.parse().map_err(|_| MailError::Address(to.to_string()))?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| relay_error(e.to_string()))?;
    let security = smtp.security.unwrap_or_default();
    let builder = match security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
        SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &smtp.host,
        )),
    }
    .map_err(|e| relay_error(e.to_string()))?;
    let port = smtp.port.unwrap_or(match security {
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::Tls => 465,
        SmtpSecurity::None => 25,
    });
    let mut builder = builder.port(port).timeout(Some(Duration::from_secs(15)));
    if let Some((user, password)) = credentials {
        builder = builder.credentials(Credentials::new(user, password));
    }
    match tokio::time::timeout(deadline, builder.build().send(message)).await {
        Ok(sent) => sent
            .map(|_| Delivery::Confirmed)
            .map_err(|e| relay_error(e.to_string())),
        Err(_) => Ok(Delivery::Unconfirmed),
    }
}

fn body(invitation: &Invitation<'_>) -> String {
    format!(
        "Hello,\n\n\
         you have been invited to LibreChat at {site}.\n\n\
         Create your account with this link (it works once, until {expires}):\n\n\
         {link}\n\n\
         If you did not expect this invitation, ignore this email: without the link nobody can \
         register in your name.\n",
        site = invitation.site,
        expires = invitation.expires_at,
        link = invitation.link,
    )
}

#[cfg(test)]
mod tests {

    use super::*;

    /// The attack: a tenant's accounts under `victim+1@`, `victim+2@`, … (one inbox) each had
    /// a pace of their own, so the relay could mail one person once a minute per account.
    #[test]
    fn tagged_addresses_share_the_pace_of_their_inbox() {
        let pacer = Pacer::new(Duration::from_secs(60));
        pacer.reserve("Victim+1@Example.com").unwrap().used();
        assert!(pacer.reserve("victim+2@example.com").is_err());
        assert!(pacer.reserve("victim@example.com").is_err());
        assert!(pacer.reserve("other@example.com").is_ok());
        assert_eq!(inbox("a+b+c@x.org"), "a@x.org");
    }

    /// The attack: reconciles running at once for tagged addresses of one inbox each passed
    /// the check before any of them recorded its send. A turn is taken under the check's lock;
    /// one given back (its handover failed) frees the inbox again.
    #[test]
    fn one_turn_at_a_time_and_a_failed_handover_gives_it_back() {
        let pacer = Pacer::default();
        let first = pacer.reserve("victim+1@example.com").unwrap();
        assert!(
            pacer.reserve("victim+2@example.com").is_err(),
            "a second turn at once"
        );
        drop(first);
        let again = pacer.reserve("victim+3@example.com");
        assert!(again.is_ok(), "a turn given back stays taken");
    }

    /// A relay that accepts the connection and never sends its greeting (a tarpit) ends the
    /// send at the deadline, unconfirmed; lettre's own timeout covers only the connect.
    #[tokio::test]
    async fn a_relay_that_never_answers_fails_the_send_at_its_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(socket);
        });
        let smtp = SmtpSpec {
            host: "127.0.0.1".into(),
            port: Some(port),
            from: "LibreChat <noreply@example.com>".into(),
            credentials_secret_ref: None,
            security: Some(SmtpSecurity::None),
        };
        let mail = Mail {
            to: "a@example.com",
            subject: "s".into(),
            body: "b".into(),
        };
        let started = std::time::Instant::now();
        let sent = send_within(Duration::from_secs(1), &smtp, None, mail).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(sent.unwrap(), Delivery::Unconfirmed);
        held.abort();
    }

    #[test]
    fn one_email_a_minute_to_one_address() {
        let pacer = Pacer::default();
        pacer.reserve("a@example.com").unwrap().used();
        let wait = pacer.reserve("A@Example.com").err().unwrap();
        assert!(wait > Duration::from_secs(55) && wait <= PACE, "{wait:?}");
        assert!(pacer.reserve("b@example.com").is_ok());
    }

    #[test]
    fn the_pace_is_the_one_configured() {
        let pacer = Pacer::new(Duration::from_secs(600));
        pacer.reserve("a@example.com").unwrap().used();
        let wait = pacer.reserve("a@example.com").err().unwrap();
        assert!(wait > Duration::from_secs(590), "{wait:?}");
        assert_eq!(pacer.pace(), Duration::from_secs(600));
    }

    #[test]
    fn the_body_says_what_and_until_when() {
        let text = body(&Invitation {
            to: "a@example.com",
            link: "https://chat.example.com/register?token=abc",
            expires_at: "2030-01-01T00:00:00Z",
            site: "https://chat.example.com",
        });
        assert!(text.contains("https://chat.example.com/register?token=abc"));
        assert!(text.contains("2030-01-01T00:00:00Z"));
    }
}
