//! `verify start`, `verify check` and `verify cancel`: the two-factor flow by hand.

use std::process::ExitCode;
use std::time::Duration;

use app::http::{CheckView, VerificationView};
use app::usecases::auth::DEFAULT_KEY_NAME;
use app::usecases::verify::{CancelError, CheckError, StartError, StartRequest};
use app::wiring::config::Sending;
use chrono::SecondsFormat;
use domain::{PhoneNumber, Transaction, VerificationCode, VerificationId};

use crate::args::{TransactionArgs, VerifyCommand};
use crate::environment;
use crate::failure::{Class, Failure};
use crate::follow::{self, describe};

pub async fn run(api_key: &str, command: VerifyCommand, json: bool) -> anyhow::Result<ExitCode> {
    let sending = match command {
        VerifyCommand::Start { .. } => Sending::Required,
        VerifyCommand::Check { .. } | VerifyCommand::Cancel { .. } => Sending::NotNeeded,
    };
    let assembled = environment::assemble(sending).await?;
    let services = assembled.services;
    match command {
        VerifyCommand::Start {
            number,
            channel,
            locale,
            transaction,
            timeout,
        } => {
            let transaction = parse_transaction(&transaction)?;
            let started = services
                .start_verification(
                    api_key,
                    StartRequest {
                        to: number,
                        channel,
                        locale,
                        code_length: None,
                        app_hash: None,
                        client: Default::default(),
                        brand: None,
                        workflow: None,
                        transaction,
                    },
                )
                .await
                .map_err(|error| match error {
                    StartError::Store(error) => error.into(),
                    error @ (StartError::Render(_)
                    | StartError::ChannelNotOffered { .. }
                    | StartError::ChannelCannotCarryTransaction { .. }) => {
                        Failure::usage(error.to_string())
                    }
                    // Too soon, too many, a country or rate refused: the service's answer.
                    error => Failure::negative(error.to_string()),
                })?;
            let verification = &started.verification;
            if !json {
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
            }
            let code_message = follow::with_dispatcher(
                assembled.dispatcher,
                follow::follow_one(
                    &services,
                    started.message.id,
                    Duration::from_secs(timeout),
                    |message| {
                        if !json {
                            println!("code SMS     {}", describe(message));
                        }
                    },
                ),
            )
            .await?;
            if json {
                let view = VerificationView::new(verification, services.now());
                crate::print_json(&view)?;
            }
            let timeout = (!json).then_some(timeout);
            Ok(crate::send::outcome(
                &services,
                code_message.status,
                timeout,
            ))
        }
        VerifyCommand::Check {
            verification,
            code,
            transaction,
        } => {
            let code = VerificationCode::parse(&code)
                .map_err(|_| Failure::usage("a code is 4 to 10 digits"))?;
            let transaction = parse_transaction(&transaction)?;
            let transaction = transaction.as_ref();
            let checked = match verification.parse::<VerificationId>() {
                Ok(id) => {
                    services
                        .check_transaction_verification(api_key, id, &code, transaction)
                        .await
                }
                Err(_) => {
                    let to = PhoneNumber::parse(&verification).map_err(|_| {
                        Failure::usage(format!(
                            "`{verification}` is neither a verification id nor a phone number"
                        ))
                    })?;
                    services
                        .check_transaction_verification_of(api_key, &to, &code, transaction)
                        .await
                }
            };
            let outcome = match checked {
                Ok(outcome) => outcome,
                // Negative answers, like a wrong code, not failures of the tool.
                Err(CheckError::Refused(refusal)) if !json => {
                    println!("refused       {refusal}");
                    return Ok(Class::Negative.into());
                }
                Err(CheckError::Refused(refusal)) => {
                    return Err(Failure::negative(format!("refused: {refusal}")))
                }
                Err(CheckError::NotFound) => {
                    return Err(Failure::negative(format!(
                    "no pending verification `{verification}` under the API key name `{api_key}`{}",
                    other_key_hint(api_key)
                )))
                }
                Err(CheckError::Store(error)) => return Err(error.into()),
            };
            let valid = outcome.valid;
            if json {
                crate::print_json(&CheckView::from(outcome))?;
            } else {
                println!("status        {}", outcome.status);
                println!("valid         {}", outcome.valid);
                println!("attempts_left {}", outcome.attempts_left);
            }
            Ok(if valid {
                ExitCode::SUCCESS
            } else {
                Class::Negative.into()
            })
        }
        VerifyCommand::Cancel { id } => {
            let id: VerificationId = id
                .parse()
                .map_err(|_| Failure::usage(format!("`{id}` is not a verification id")))?;
            let canceled = services
                .cancel_verification(api_key, id)
                .await
                .map_err(|error| match error {
                    CancelError::Store(error) => error.into(),
                    CancelError::NotFound => Failure::negative(format!(
                        "no verification `{id}` under the API key name `{api_key}`{}",
                        other_key_hint(api_key)
                    )),
                    error @ CancelError::Ended(_) => Failure::negative(error.to_string()),
                })?;
            if json {
                crate::print_json(&VerificationView::new(&canceled, services.now()))?;
            } else {
                println!("verification {}", canceled.id);
                println!("status       {}", canceled.status);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The payment named by `--amount`, `--currency` and `--payee`, or the usage error naming
/// the one that is wrong (clap has made sure all three or none are given).
fn parse_transaction(args: &TransactionArgs) -> anyhow::Result<Option<Transaction>> {
    Transaction::parse(
        args.amount.as_deref(),
        args.currency.as_deref(),
        args.payee.as_deref(),
    )
    .map_err(|error| Failure::usage(format!("--{}: {error}", error.field())))
}

/// Where else to look: a verification started through the API belongs to the key that started
/// it, most often the default run's.
fn other_key_hint(api_key: &str) -> String {
    if api_key == DEFAULT_KEY_NAME {
        " (--api-key-name NAME looks under another)".to_owned()
    } else {
        format!(
            " (--api-key-name NAME looks under another, such as `{DEFAULT_KEY_NAME}`, the service's default key)"
        )
    }
}
