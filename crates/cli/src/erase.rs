//! `erase NUMBER`: a number's data erased on its owner's request, as `DELETE /v1/numbers/{e164}`
//! does, on the database directly (whoever holds `DATABASE_URL` is an admin).

use std::process::ExitCode;

use app::http::ErasureView;
use app::wiring::config::Sending;
use domain::PhoneNumber;

use crate::environment;

pub async fn run(api_key: &str, number: &PhoneNumber, json: bool) -> anyhow::Result<ExitCode> {
    let services = environment::assemble(Sending::NotNeeded).await?.services;
    let erasure = services.erase_number(api_key, number).await?;
    let view = ErasureView::new(number.masked(), erasure);
    if json {
        crate::print_json(&view)?;
    } else {
        let erased = &view.erased;
        println!(
            "erased {}: {} messages, {} attempts, {} delivery reports, {} verifications \
             ({} canceled), {} codes, {} fraud decisions",
            view.to,
            erased.messages,
            erased.attempts,
            erased.delivery_events,
            erased.verifications,
            view.canceled_verifications,
            erased.verification_codes,
            erased.fraud_decisions
        );
    }
    Ok(ExitCode::SUCCESS)
}
