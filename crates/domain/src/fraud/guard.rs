//! [`FraudGuard::assess`]: every policy judged for one request from the signals the caller
//! read, giving the decision and the blocks to place or renew.

use chrono::{DateTime, TimeDelta, Utc};

use super::line_type::{DenyLineTypes, LineType};
use super::signals::country_surge;
use super::{
    Block, BlockPeriod, CodeCounts, ConversionJudgement, ConversionPolicy, Decision, Policies,
    Policy, Prefix, PrefixSurgePolicy, Prefixes, Reason, ReasonCode, SafeList,
};
use crate::pumping::hour_of;
use crate::{PhoneNumber, PumpingPolicy};

/// The guard's settings: each policy's mode and its thresholds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FraudGuard {
    pub policies: Policies,
    pub conversion: ConversionPolicy,
    pub prefix_surge: PrefixSurgePolicy,
    /// The pumping alarm's thresholds (`PUMPING_SURGE_MULTIPLE`, `PUMPING_MIN_SENDS`); its
    /// `refuse` is not read: the `country_surge` policy's mode says what a surge does.
    pub country_surge: PumpingPolicy,
    pub block_period: BlockPeriod,
    pub deny_line_types: DenyLineTypes,
}

/// What the guard knows of one request, read by the caller (cached as it likes).
#[derive(Debug, Clone, Copy)]
pub struct Signals<'a> {
    pub to: &'a PhoneNumber,
    pub prefixes: &'a Prefixes,
    /// The country's ISO code (or calling code), for what the reasons say.
    pub country: &'a str,
    pub safe_list: &'a SafeList,
    /// [`LineType::of`] the number.
    pub line_type: LineType,
    /// Blocks that may cover the number; those that do not, or have healed, are ignored.
    pub blocks: &'a [Block],
    /// Hourly counts over the baseline period, of the narrow prefix, the wide one and the
    /// country.
    pub narrow: &'a [CodeCounts],
    pub wide: &'a [CodeCounts],
    pub country_counts: &'a [CodeCounts],
    /// What the client's policies (IP velocity, budgets) found, judged by the caller.
    pub client: &'a [Reason],
}

/// The guard's answer, and what it asks to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub decision: Decision,
    /// Blocks to place or renew (written as they are: the prefix is their key).
    pub blocks: Vec<BlockOrder>,
    /// When the request is blocked, how long until it may succeed, when that is known.
    pub retry_after: Option<TimeDelta>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BlockOrder {
    Place(Block),
    Renew(Block),
}

impl BlockOrder {
    pub fn block(&self) -> &Block {
        match self {
            BlockOrder::Place(block) | BlockOrder::Renew(block) => block,
        }
    }
}

/// How long a client is asked to wait after a country surge: it is measured over an hour.
const COUNTRY_SURGE_RETRY_AFTER: TimeDelta = TimeDelta::minutes(15);

impl FraudGuard {
    /// Judges one request for a code at `now`.
    ///
    /// A safe-listed number is judged only by the client's policies. Otherwise its line type
    /// may be refused; a block in
    /// force over one of its prefixes explains itself (and is renewed while codes are still
    /// asked for it); each prefix not blocked is judged on its conversion against its
    /// country's and on surges beyond its country's traffic, and a finding places a block;
    /// the country's surge is judged afresh at each request. A surge that converts as usual
    /// is legitimate traffic and passes.
    pub fn assess(&self, signals: &Signals<'_>, now: DateTime<Utc>) -> Assessment {
        let mut findings: Vec<Reason> = Vec::new();
        let mut orders = Vec::new();
        let mut retry_after = None;
        if signals.safe_list.covers(signals.to) {
            return self.conclude(signals.client.to_vec(), orders, retry_after);
        }

        if self.policies.is_on(Policy::LineType) && self.deny_line_types.denies(signals.line_type) {
            findings.push(Reason::new(
                ReasonCode::LineType,
                format!(
                    "{} numbers are refused: codes to them earn their owner money and reach no one",
                    signals.line_type
                ),
            ));
        }

        let active: Vec<&Block> = signals
            .blocks
            .iter()
            .filter(|block| block.is_active(now) && block.prefix.covers(signals.to))
            .collect();
        for block in &active {
            findings.extend(block.reasons.iter().cloned());
            retry_after = longest(retry_after, block.retry_after(now));
            let requested = recent_requests(self.counts_of(signals, &block.prefix), now);
            if requested >= self.conversion.min_codes {
                if let Some(renewed) = block.renewed(requested, now, self.block_period) {
                    orders.push(BlockOrder::Renew(renewed));
                }
            }
        }

        // A prefix under a block is not judged again: its refused codes would make the wide
        // range around it look pumped. The wide range is judged only when the narrow one is
        // found clean, so that one pumped range of a thousand does not block a hundred.
        if active.is_empty() {
            for (prefix, counts) in [
                (&signals.prefixes.narrow, signals.narrow),
                (&signals.prefixes.wide, signals.wide),
            ] {
                let reasons = self.judge_prefix(prefix, counts, signals, now);
                if reasons.is_empty() {
                    continue;
                }
                findings.extend(reasons.iter().cloned());
                let block = Block::new(
                    prefix.clone(),
                    reasons,
                    recent_requests(counts, now),
                    now,
                    self.block_period,
                );
                retry_after = longest(retry_after, block.retry_after(now));
                orders.push(BlockOrder::Place(block));
                break;
            }
        }

        if self.policies.is_on(Policy::CountrySurge) {
            if let Some(traffic) = country_surge(&self.country_surge, signals.country_counts, now) {
                let conversion =
                    self.conversion
                        .judge(signals.country_counts, signals.country_counts, now);
                if !self.conversion.is_usual(&conversion) {
                    findings.push(Reason::new(
                        ReasonCode::CountrySurge,
                        format!(
                            "{}: {} codes in the last hour, usually {:.1} an hour{}",
                            signals.country,
                            traffic.last_hour,
                            traffic.usual_per_hour,
                            converting(&conversion)
                        ),
                    ));
                    retry_after = longest(retry_after, Some(COUNTRY_SURGE_RETRY_AFTER));
                }
            }
        }
        findings.extend(signals.client.iter().cloned());
        self.conclude(findings, orders, retry_after)
    }

    fn conclude(
        &self,
        findings: Vec<Reason>,
        blocks: Vec<BlockOrder>,
        retry_after: Option<TimeDelta>,
    ) -> Assessment {
        let decision = Decision::from_findings(findings, &self.policies);
        let retry_after = retry_after.filter(|_| decision.is_blocked());
        Assessment {
            decision,
            blocks,
            retry_after,
        }
    }

    fn counts_of<'a>(&self, signals: &Signals<'a>, prefix: &Prefix) -> &'a [CodeCounts] {
        if *prefix == signals.prefixes.narrow {
            signals.narrow
        } else if *prefix == signals.prefixes.wide {
            signals.wide
        } else {
            &[]
        }
    }

    /// What the prefix policies find in one prefix.
    fn judge_prefix(
        &self,
        prefix: &Prefix,
        counts: &[CodeCounts],
        signals: &Signals<'_>,
        now: DateTime<Utc>,
    ) -> Vec<Reason> {
        let mut reasons = Vec::new();
        let conversion = self.conversion.judge(counts, signals.country_counts, now);
        if self.policies.is_on(Policy::PrefixConversion) && self.conversion.is_low(&conversion) {
            reasons.push(Reason::new(
                ReasonCode::PrefixLowConversion,
                format!("{prefix}:{}", low_conversion(&conversion, signals.country)),
            ));
        }
        if self.policies.is_on(Policy::PrefixSurge) && !self.conversion.is_usual(&conversion) {
            if let Some(traffic) = self.prefix_surge.surge(counts, signals.country_counts, now) {
                reasons.push(Reason::new(
                    ReasonCode::PrefixSurge,
                    format!(
                        "{prefix}: {} codes in the last hour, {:.1} an hour expected from its \
                         usual share of {} traffic{}",
                        traffic.last_hour,
                        traffic.usual_per_hour,
                        signals.country,
                        converting(&conversion)
                    ),
                ));
            }
        }
        reasons
    }
}

fn longest(a: Option<TimeDelta>, b: Option<TimeDelta>) -> Option<TimeDelta> {
    a.max(b)
}

/// Codes asked for in the current hour and the one before.
fn recent_requests(counts: &[CodeCounts], now: DateTime<Utc>) -> u64 {
    let since = hour_of(now) - TimeDelta::hours(1);
    counts
        .iter()
        .filter(|counts| counts.hour >= since)
        .map(CodeCounts::requested)
        .sum()
}

fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

fn low_conversion(judgement: &ConversionJudgement, country: &str) -> String {
    match judgement {
        ConversionJudgement::Judged { recent, usual, .. } => format!(
            " {} of {:.0} codes checked, {} approved lately; {country} codes are checked {} \
             and approved {} of the time",
            recent.checked,
            recent.settled,
            recent.approved,
            percent(usual.check_rate()),
            percent(usual.approval_rate())
        ),
        ConversionJudgement::TooLittleHistory { .. } => " too little history".to_owned(),
    }
}

fn converting(judgement: &ConversionJudgement) -> String {
    match judgement {
        ConversionJudgement::Judged { recent, .. } => format!(
            ", {} checked and {} approved",
            percent(recent.check_rate()),
            percent(recent.approval_rate())
        ),
        ConversionJudgement::TooLittleHistory { .. } => {
            ", too few codes old enough to show their conversion".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::signals::tests::{hourly, noon, usual_country};
    use crate::fraud::{Action, Mode};

    /// The signals of a request to `to`, owning what [`Signals`] borrows.
    struct Request {
        to: PhoneNumber,
        prefixes: Prefixes,
        safe_list: SafeList,
        blocks: Vec<Block>,
        narrow: Vec<CodeCounts>,
        wide: Vec<CodeCounts>,
        country: Vec<CodeCounts>,
        client: Vec<Reason>,
    }

    impl Request {
        fn to(number: &str, country: Vec<CodeCounts>) -> Self {
            let to = PhoneNumber::parse(number).unwrap();
            Self {
                prefixes: Prefixes::of(&to),
                to,
                safe_list: SafeList::default(),
                blocks: Vec::new(),
                narrow: Vec::new(),
                wide: Vec::new(),
                country,
                client: Vec::new(),
            }
        }

        fn signals(&self) -> Signals<'_> {
            Signals {
                to: &self.to,
                prefixes: &self.prefixes,
                country: "GB",
                safe_list: &self.safe_list,
                line_type: LineType::of(&self.to),
                blocks: &self.blocks,
                narrow: &self.narrow,
                wide: &self.wide,
                country_counts: &self.country,
                client: &self.client,
            }
        }
    }

    fn codes(assessment: &Assessment) -> Vec<ReasonCode> {
        assessment
            .decision
            .reasons
            .iter()
            .map(|reason| reason.code)
            .collect()
    }

    /// GB as usual (400 codes an hour, 80% converting), plus `recent` in its last two hours.
    fn gb_with(now: DateTime<Utc>, recent: &[(i64, u64, u64, u64)]) -> Vec<CodeCounts> {
        let mut country = usual_country(now, 400, 0.8);
        country.extend(hourly(now, recent));
        country
    }

    #[test]
    fn usual_traffic_is_allowed_with_nothing_to_say() {
        let now = noon();
        let mut request = Request::to(
            "+447700900123",
            gb_with(now, &[(0, 200, 150, 140), (1, 400, 330, 320)]),
        );
        request.narrow = hourly(now, &[(0, 1, 1, 1), (30, 2, 2, 2)]);
        request.wide = hourly(now, &[(0, 4, 3, 3), (1, 5, 4, 4)]);
        let assessment = FraudGuard::default().assess(&request.signals(), now);
        assert_eq!(assessment.decision, Decision::allow());
        assert!(assessment.blocks.is_empty());
        assert_eq!(assessment.retry_after, None);
    }

    #[test]
    fn a_thousand_number_range_nobody_checks_is_blocked_for_the_block_period() {
        let now = noon();
        let mut request = Request::to(
            "+447700900123",
            gb_with(now, &[(0, 260, 150, 140), (1, 400, 330, 320)]),
        );
        // 60 codes to the range this half hour, none checked.
        request.narrow = hourly(now, &[(0, 60, 0, 0)]);
        request.wide = request.narrow.clone();
        let assessment = FraudGuard::default().assess(&request.signals(), now);
        assert_eq!(assessment.decision.action, Action::Block);
        assert_eq!(
            codes(&assessment),
            [ReasonCode::PrefixLowConversion, ReasonCode::PrefixSurge]
        );
        assert!(
            assessment.decision.reasons[0].detail.starts_with(
                "+447700900: 0 of 54 codes checked, 0 approved lately; GB codes are checked 80%"
            ),
            "{}",
            assessment.decision.reasons[0].detail
        );
        // The range is blocked for twelve hours (not the wide range around it), and the client
        // is told when.
        let blocked: Vec<&str> = assessment
            .blocks
            .iter()
            .map(|order| order.block().prefix.as_str())
            .collect();
        assert_eq!(blocked, ["+447700900"]);
        assert!(matches!(&assessment.blocks[0], BlockOrder::Place(block)
            if block.expires_at == Some(now + TimeDelta::hours(12)) && block.codes == 60));
        assert_eq!(assessment.retry_after, Some(TimeDelta::hours(12)));
    }

    #[test]
    fn pumping_from_its_first_codes_is_blocked_by_the_surge_before_conversion_can_tell() {
        let now = noon();
        let mut request = Request::to("+447700900123", gb_with(now, &[(0, 200, 150, 140)]));
        // Twenty codes in the last minute: none old enough to have been checked.
        request.narrow = hourly(now, &[(0, 20, 0, 0)]);
        let now = hour_of(now) + TimeDelta::minutes(1);
        let assessment = FraudGuard::default().assess(&request.signals(), now);
        assert_eq!(codes(&assessment), [ReasonCode::PrefixSurge]);
        assert!(assessment.decision.reasons[0]
            .detail
            .contains("too few codes old enough"));
    }

    #[test]
    fn a_legitimate_surge_of_five_times_converting_as_usual_is_not_blocked() {
        let now = noon();
        // GB at five times its 400 an hour and a little more for the last two hours (a surge
        // by the pumping alarm's arithmetic), converting as usual.
        let request_country = gb_with(now, &[(0, 1_100, 880, 836), (1, 2_200, 1_760, 1_672)]);
        let mut request = Request::to("+447700900123", request_country);
        // The range's usual share, five times over: 2 an hour becomes 10.
        request.narrow = hourly(
            now,
            &(2..24 * 7)
                .map(|hours_ago| (hours_ago, 2, 2, 1))
                .collect::<Vec<_>>(),
        );
        request
            .narrow
            .extend(hourly(now, &[(0, 6, 4, 4), (1, 10, 8, 8)]));
        request.wide = request.narrow.clone();
        let assessment = FraudGuard::default().assess(&request.signals(), now);
        assert_eq!(assessment.decision, Decision::allow());
        assert!(assessment.blocks.is_empty());
    }

    #[test]
    fn a_country_surge_nobody_checks_is_the_pumping_alarm() {
        let now = noon();
        let mut request = Request::to(
            "+447700900123",
            gb_with(now, &[(0, 3_000, 10, 5), (1, 1_000, 20, 10)]),
        );
        // Spread over many ranges: this one has seen little.
        request.narrow = hourly(now, &[(0, 1, 0, 0)]);
        let assessment = FraudGuard::default().assess(&request.signals(), now);
        assert_eq!(codes(&assessment), [ReasonCode::CountrySurge]);
        assert!(assessment.decision.reasons[0]
            .detail
            .starts_with("GB: 3500 codes in the last hour, usually 400.0 an hour"));
        // Judged afresh at every request: nothing stored.
        assert!(assessment.blocks.is_empty());
        assert_eq!(assessment.retry_after, Some(TimeDelta::minutes(15)));
    }

    #[test]
    fn a_country_first_sent_to_less_than_a_day_ago_never_surges() {
        let now = noon();
        // A new deployment: two hours of traffic, nobody has checked yet.
        let mut request = Request::to(
            "+447700900123",
            hourly(now, &[(0, 3_000, 0, 0), (1, 50, 0, 0)]),
        );
        request.narrow = hourly(now, &[(0, 1, 0, 0)]);
        let assessment = FraudGuard::default().assess(&request.signals(), now);
        assert!(
            !assessment.decision.names(ReasonCode::CountrySurge),
            "{assessment:?}"
        );
    }

    #[test]
    fn a_new_destination_with_no_history_is_not_blocked_on_conversion_alone() {
        let now = noon();
        // A country never sent to before, and a range with 12 codes none of them checked.
        let mut request = Request::to("+447700900123", Vec::new());
        request.narrow = hourly(now, &[(0, 6, 0, 0), (1, 6, 0, 0)]);
        let assessment = FraudGuard::default().assess(&request.signals(), now);
        assert_eq!(assessment.decision, Decision::allow());
    }

    #[test]
    fn a_block_in_force_explains_itself_and_is_renewed_while_codes_still_come() {
        let placed = noon() - TimeDelta::hours(3);
        let now = noon();
        let mut request = Request::to("+447700900123", gb_with(now, &[]));
        let block = Block::new(
            Prefix::parse("+447700900").unwrap(),
            vec![Reason::new(
                ReasonCode::PrefixLowConversion,
                "0 of 40 codes checked",
            )],
            40,
            placed,
            BlockPeriod::default(),
        );
        request.blocks = vec![block.clone()];
        // Still asked for: 30 refused codes in the last hour.
        request.narrow = vec![CodeCounts {
            refused: 30,
            ..CodeCounts::at(hour_of(now))
        }];
        let guard = FraudGuard::default();
        let assessment = guard.assess(&request.signals(), now);
        assert_eq!(assessment.decision.action, Action::Block);
        assert_eq!(assessment.decision.reasons, block.reasons);
        assert_eq!(assessment.retry_after, Some(TimeDelta::hours(9)));
        assert!(
            matches!(&assessment.blocks[..], [BlockOrder::Renew(renewed)]
            if renewed.expires_at == Some(now + TimeDelta::hours(12)) && renewed.codes == 30)
        );

        // Once nobody asks any more, it is not renewed, and it heals at its expiry.
        request.narrow.clear();
        assert!(guard.assess(&request.signals(), now).blocks.is_empty());
        let healed = guard.assess(&request.signals(), placed + TimeDelta::hours(12));
        assert_eq!(healed.decision, Decision::allow());
    }

    #[test]
    fn the_safe_list_is_never_blocked_by_the_guard_but_client_limits_still_apply() {
        let now = noon();
        let mut request = Request::to("+447700900123", gb_with(now, &[]));
        request.narrow = hourly(now, &[(0, 60, 0, 0)]);
        request.blocks = vec![Block::manual(
            Prefix::parse("+44").unwrap(),
            "all of GB",
            now,
            None,
        )];
        request.safe_list = SafeList::new([Prefix::parse("+447700900123").unwrap()]);
        let guard = FraudGuard::default();
        let assessment = guard.assess(&request.signals(), now);
        assert_eq!(assessment.decision, Decision::allow());
        assert!(assessment.blocks.is_empty());

        request.client = vec![Reason::new(ReasonCode::BudgetExhausted, "USD 20 a day")];
        assert_eq!(
            codes(&guard.assess(&request.signals(), now)),
            [ReasonCode::BudgetExhausted]
        );
        // A neighbour off the list is blocked by hand.
        let neighbour = Request {
            safe_list: request.safe_list.clone(),
            blocks: request.blocks.clone(),
            ..Request::to("+447700900124", gb_with(now, &[]))
        };
        let assessment = guard.assess(&neighbour.signals(), now);
        assert_eq!(codes(&assessment), [ReasonCode::ManualBlock]);
        assert_eq!(assessment.retry_after, None);
    }

    #[test]
    fn in_monitor_mode_the_finding_is_recorded_and_the_code_goes() {
        let now = noon();
        let mut request = Request::to("+447700900123", gb_with(now, &[]));
        request.narrow = hourly(now, &[(0, 60, 0, 0)]);
        let guard = FraudGuard {
            policies: Policies::all(Mode::Monitor),
            ..FraudGuard::default()
        };
        let assessment = guard.assess(&request.signals(), now);
        assert_eq!(assessment.decision.action, Action::Monitor);
        assert!(assessment.decision.names(ReasonCode::PrefixLowConversion));
        assert_eq!(assessment.retry_after, None);
        // The block is placed all the same, so that monitoring shows what enforcing would do.
        assert_eq!(assessment.blocks.len(), 1);

        let off = FraudGuard {
            policies: Policies::all(Mode::Off),
            ..FraudGuard::default()
        };
        let assessment = off.assess(&request.signals(), now);
        assert_eq!(assessment.decision, Decision::allow());
        assert!(assessment.blocks.is_empty());
    }

    #[test]
    fn a_premium_rate_number_is_refused_naming_its_line_type() {
        let now = noon();
        let request = Request::to("+449012345678", gb_with(now, &[]));
        let guard = FraudGuard::default();
        let assessment = guard.assess(&request.signals(), now);
        assert_eq!(assessment.decision.action, Action::Block);
        assert_eq!(codes(&assessment), [ReasonCode::LineType]);
        assert!(assessment.decision.reasons[0]
            .detail
            .starts_with("premium_rate numbers are refused"));
        // Nothing to wait for, and no block: the line type is the number's for good.
        assert_eq!(assessment.retry_after, None);
        assert!(assessment.blocks.is_empty());

        let allowed = FraudGuard {
            deny_line_types: "pager".parse().unwrap(),
            ..FraudGuard::default()
        };
        assert_eq!(
            allowed.assess(&request.signals(), now).decision,
            Decision::allow()
        );
    }
}
