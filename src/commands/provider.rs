//! `spbridge inbox` and `spbridge task`: the provider's side, over AMQP only.
//!
//! Owns: argument handling and printing for the inbox client in `spbridge::inbox`.
//! Must not: hold protocol logic (the library does).

use anyhow::Context;
use clap::{Args, Subcommand};
use spbridge::inbox::{self, InboxSettings, TaskAction};
use std::process::ExitCode;

/// How to reach spbridge's broker as a provider.
#[derive(Args, Debug, Clone)]
pub struct ProviderArgs {
    /// Your provider id (the `provider.<id>` routing key and queue name).
    #[arg(long, env = "SPBRIDGE_PROVIDER")]
    pub provider: String,
    /// AMQP URI of spbridge's RabbitMQ.
    #[arg(
        long,
        env = "SPBRIDGE_BROKER__URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// For `amqps://`: PEM bundle of the CA that signs the broker's certificate.
    #[arg(long, env = "SPBRIDGE_BROKER__CA_FILE")]
    pub amqp_ca: Option<std::path::PathBuf>,
    /// For mutual TLS to the broker: your client certificate chain (PEM).
    #[arg(long, env = "SPBRIDGE_BROKER__CLIENT_CERT", requires = "amqp_key")]
    pub amqp_cert: Option<std::path::PathBuf>,
    /// For mutual TLS to the broker: your client certificate's private key (PEM).
    #[arg(long, env = "SPBRIDGE_BROKER__CLIENT_KEY", requires = "amqp_cert")]
    pub amqp_key: Option<std::path::PathBuf>,
    /// spbridge's `broker.prefix`.
    #[arg(long, env = "SPBRIDGE_BROKER__PREFIX", default_value = "spbridge")]
    pub prefix: String,
}

impl ProviderArgs {
    fn settings(&self) -> InboxSettings {
        InboxSettings {
            amqp_url: self.amqp_url.clone(),
            tls: spbridge::broker::BrokerTlsFiles {
                ca_file: self.amqp_ca.clone(),
                client_cert: self.amqp_cert.clone(),
                client_key: self.amqp_key.clone(),
            },
            prefix: self.prefix.clone(),
            provider_id: self.provider.clone(),
        }
    }
}

/// What to do with a Task.
#[derive(Subcommand, Debug, Clone)]
pub enum TaskCommand {
    /// Mark it received (the inbox does this for you).
    Receive,
    /// Accept the referral.
    Accept,
    /// Decline it; the reason goes back to the referrer.
    Reject {
        #[arg(long)]
        reason: String,
    },
    /// Support has started.
    Start,
    /// Support is finished; the outcome goes back to the referrer.
    Complete {
        /// Free-text outcome for the GP.
        #[arg(long)]
        outcome: String,
        /// Outcome code (SPBridge-SocialPrescribingOutcome), e.g. support-completed, signposted.
        #[arg(long, default_value = "support-completed")]
        code: String,
    },
    /// Add a note without changing the status.
    Note {
        #[arg(long)]
        text: String,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn inbox(args: &ProviderArgs, count: Option<usize>) -> anyhow::Result<ExitCode> {
    let settings = args.settings();
    eprintln!(
        "waiting for referrals on {}.provider.{} …",
        settings.prefix, settings.provider_id
    );
    let handled = runtime()?.block_on(inbox::run(&settings, count, |summary| {
        println!("{summary}\n");
    }))?;
    eprintln!("{handled} referral(s) received and acknowledged");
    Ok(ExitCode::SUCCESS)
}

pub fn task(args: &ProviderArgs, task_id: &str, command: TaskCommand) -> anyhow::Result<ExitCode> {
    let action = match command {
        TaskCommand::Receive => TaskAction::Receive,
        TaskCommand::Accept => TaskAction::Accept,
        TaskCommand::Reject { reason } => TaskAction::Reject { reason },
        TaskCommand::Start => TaskAction::Start,
        TaskCommand::Complete { outcome, code } => TaskAction::Complete { outcome, code },
        TaskCommand::Note { text } => TaskAction::Note { text },
    };
    let update = action.task_update(task_id);
    let message_id = runtime()?.block_on(inbox::send_update(&args.settings(), &update))?;
    println!("sent Task/{task_id} update (message {message_id}); spbridge dead-letters it with the reason if it is refused");
    Ok(ExitCode::SUCCESS)
}
