//! `verify start` and `verify check`: the two-factor flow by hand.

use std::process::ExitCode;
use std::time::Duration;

use app::config::Sending;
use app::verify::{CheckError, StartRequest};
use chrono::SecondsFormat;
use domain::{PhoneNumber, VerificationCode, VerificationId};

use crate::args::VerifyCommand;
use crate::environment;
use crate::follow::{self, describe};

pub async fn run(api_key: &str, command: VerifyCommand) -> anyhow::Result<ExitCode> {
    let sending = match command {
        VerifyCommand::Start { .. } => Sending::Required,
        VerifyCommand::Check { .. } => Sending::NotNeeded,
    };
    let assembled = environment::assemble(sending).await?;
    let services = assembled.services;
    match command {
        VerifyCommand::Start {
            number,
            channel,
            locale,
            timeout,
        } => {
            let started = services
                .start_verification(
                    api_key,
                    StartRequest {
                        to: number,
                        channel,
                        locale,
                        code_length: None,
                    },
                )
                .await?;
            let verification = &started.verification;
            println!("verification {}", verification.id);
            println!("status       {}", verification.status);
            println!("to           {}", verification.to.masked());
            println!(
                "expires_at   {}",
                verification
                    .expires_at
                    .to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            println!("send_count   {}", verification.send_count);
            let code_message = follow::with_dispatcher(
                assembled.dispatcher,
                follow::follow_one(
                    &services,
                    started.message.id,
                    Duration::from_secs(timeout),
                    |message| println!("code SMS     {}", describe(message)),
                ),
            )
            .await?;
            Ok(crate::send::outcome(
                &services,
                code_message.status,
                timeout,
            ))
        }
        VerifyCommand::Check { verification, code } => {
            let code = VerificationCode::parse(&code)
                .map_err(|_| anyhow::anyhow!("a code is 4 to 10 digits"))?;
            let checked = match verification.parse::<VerificationId>() {
                Ok(id) => services.check_verification(api_key, id, &code).await,
                Err(_) => {
                    let to = PhoneNumber::parse(&verification).map_err(|_| {
                        anyhow::anyhow!(
                            "`{verification}` is neither a verification id nor a phone number"
                        )
                    })?;
                    services.check_verification_of(api_key, &to, &code).await
                }
            };
            let outcome = match checked {
                Ok(outcome) => outcome,
                // A negative answer, like a wrong code, not a failure of the tool.
                Err(CheckError::Refused(refusal)) => {
                    println!("refused       {refusal}");
                    return Ok(ExitCode::FAILURE);
                }
                Err(error) => return Err(error.into()),
            };
            println!("status        {}", outcome.status);
            println!("valid         {}", outcome.valid);
            println!("attempts_left {}", outcome.attempts_left);
            Ok(if outcome.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
