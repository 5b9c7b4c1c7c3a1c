//! The verification and password reset emails, over SMTP with lettre. The link carries a secret
//! token, so neither the link nor the message body is ever logged.

use lettre::message::header::ContentType;
use lettre::message::{Body, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    app_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid SMTP URL: {0}")]
    Url(String),
    #[error("invalid sender address {0:?}")]
    From(String),
}

impl Mailer {
    /// `smtp://host:port` (plain), `smtp://…?tls=required` (STARTTLS) or `smtps://…`.
    pub fn new(smtp_url: &str, from: &str, app_name: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            // The lettre error may echo the URL, which can hold a password.
            .map_err(|_| MailError::Url("cannot parse the SMTP URL".into()))?
            .build();
        let from = from
            .parse()
            .map_err(|_| MailError::From(from.to_string()))?;
        Ok(Self {
            transport,
            from,
            app_name: app_name.to_string(),
        })
    }

    /// Sends the verification link; failures are logged (without the link) and
    /// not retried: the account is upgraded either way.
    pub async fn send_verification(&self, to: &str, link: &str) {
        let text = format!(
            "Welcome to {app}!\r\n\r\nConfirm your email address: open this link and press \"Confirm my email\":\r\n\r\n{link}\r\n\r\n\
             The link works once and expires in 24 hours. If you did not create an account, ignore this email.\r\n",
            app = self.app_name
        );
        let subject = format!("Verify your email for {}", self.app_name);
        self.send(to, subject, text, "verification").await;
    }

    /// Sends a password reset link (valid an hour, once). Same rules as above.
    pub async fn send_password_reset(&self, to: &str, link: &str) {
        let text = format!(
            "Someone (hopefully you) asked to reset the password of your {app} account.\r\n\r\n\
             Choose a new password here:\r\n\r\n{link}\r\n\r\n\
             The link works once and expires in 1 hour. Every device signed in to the account \
             will be signed out. If you did not ask for this, ignore this email: your password stays as it is.\r\n",
            app = self.app_name
        );
        let subject = format!("Reset your {} password", self.app_name);
        self.send(to, subject, text, "password reset").await;
    }

    async fn send(&self, to: &str, subject: String, text: String, what: &'static str) {
        let Ok(to_box) = to.parse::<Mailbox>() else {
            tracing::warn!(what, "email not sent: recipient address not accepted");
            return;
        };
        // lettre picks the transfer encoding (quoted-printable for the long link
        // line); mail clients decode it.
        let body = Body::new(text);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body);
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(what, error = %e, "email not built");
                return;
            }
        };
        match self.transport.send(message).await {
            Ok(_) => tracing::info!(what, "email sent"),
            Err(e) => tracing::warn!(what, error = %e, "email not sent"),
        }
    }
}
