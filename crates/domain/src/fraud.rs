//! The fraud guard's decisions: whether a one-time code may go to a number, and why not.
//!
//! SMS pumping (toll fraud) makes a service send codes to numbers a fraudster is paid for, and
//! nobody ever types those codes. The guard judges each destination prefix by its conversion
//! (codes sent against codes checked and approved), by surges in its volume and its country's,
//! and by the number's line type; it says which policy decided and why ([`Decision`]), each
//! policy can be watched ([`Mode::Monitor`]) before it is enforced, and what it blocks heals by
//! itself ([`Block`]). Everything here is pure: the counts and the time come in as arguments.

mod blocks;
mod guard;
mod line_type;
mod prefix;
mod signals;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use blocks::{Block, BlockPeriod, InvalidBlockPeriod, BLOCK_RENEWAL_INTERVAL};
pub use guard::{Assessment, BlockOrder, FraudGuard, Signals};
pub use line_type::{DenyLineTypes, LineType, UnknownLineType};
pub use prefix::{InvalidPrefix, Prefix, Prefixes, SafeList};
pub use signals::{
    signal_baseline_period, CodeCounts, CodeEvent, Conversion, ConversionJudgement,
    ConversionPolicy, PrefixSurgePolicy, SignalKey, SignalScope,
};

/// What the guard does with a request for a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing found, or only what policies that are off would find.
    Allow,
    /// A policy in [`Mode::Monitor`] would have blocked: the code goes, the finding is recorded.
    Monitor,
    /// A policy in [`Mode::Enforce`] refuses the code.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Monitor => "monitor",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "allow" => Ok(Action::Allow),
            "monitor" => Ok(Action::Monitor),
            "block" => Ok(Action::Block),
            other => Err(UnknownName::new("action", other)),
        }
    }
}

/// Why the guard decided as it did: a stable code for machines, one per policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// The prefix's codes are checked or approved far less often than its country's.
    PrefixLowConversion,
    /// The prefix gets far more codes than usual, beyond what its country's traffic explains.
    PrefixSurge,
    /// The country gets far more codes than usual (the pumping alarm).
    CountrySurge,
    /// The number's line type is refused (`DENY_LINE_TYPES`).
    LineType,
    /// The client's IP address (or its range) asks for codes too fast.
    IpVelocity,
    /// The code would pass a daily budget.
    BudgetExhausted,
    /// An admin blocked the prefix by hand.
    ManualBlock,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 7] = [
        ReasonCode::PrefixLowConversion,
        ReasonCode::PrefixSurge,
        ReasonCode::CountrySurge,
        ReasonCode::LineType,
        ReasonCode::IpVelocity,
        ReasonCode::BudgetExhausted,
        ReasonCode::ManualBlock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::PrefixLowConversion => "prefix_low_conversion",
            ReasonCode::PrefixSurge => "prefix_surge",
            ReasonCode::CountrySurge => "country_surge",
            ReasonCode::LineType => "line_type",
            ReasonCode::IpVelocity => "ip_velocity",
            ReasonCode::BudgetExhausted => "budget_exhausted",
            ReasonCode::ManualBlock => "manual_block",
        }
    }

    /// The policy whose finding this is, and whose mode says what it does.
    pub fn policy(self) -> Policy {
        match self {
            ReasonCode::PrefixLowConversion => Policy::PrefixConversion,
            ReasonCode::PrefixSurge => Policy::PrefixSurge,
            ReasonCode::CountrySurge => Policy::CountrySurge,
            ReasonCode::LineType => Policy::LineType,
            ReasonCode::IpVelocity => Policy::IpVelocity,
            ReasonCode::BudgetExhausted => Policy::Budget,
            ReasonCode::ManualBlock => Policy::ManualBlock,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReasonCode {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ReasonCode::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
            .ok_or_else(|| UnknownName::new("reason code", text))
    }
}

/// One finding: which policy found it, and in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reason {
    pub code: ReasonCode,
    pub detail: String,
}

impl Reason {
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

/// The guard's answer for one request, serialised as `{"action": ..., "reasons": [{"code",
/// "detail"}]}`: the `risk` of a verification, a line of the decision log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decision {
    pub action: Action,
    /// What the policies that are not off found; empty when allowed with nothing found.
    pub reasons: Vec<Reason>,
}

impl Decision {
    pub fn allow() -> Self {
        Self {
            action: Action::Allow,
            reasons: Vec::new(),
        }
    }

    /// What `findings` come to under `policies`: those of policies that are off are dropped;
    /// one of an enforced policy blocks; otherwise one of a monitored policy is recorded.
    pub fn from_findings(findings: Vec<Reason>, policies: &Policies) -> Self {
        let mut action = Action::Allow;
        let mut reasons = Vec::new();
        for reason in findings {
            match policies.mode(reason.code.policy()) {
                Mode::Off => continue,
                Mode::Monitor if action == Action::Allow => action = Action::Monitor,
                Mode::Monitor => {}
                Mode::Enforce => action = Action::Block,
            }
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        Self { action, reasons }
    }

    pub fn is_blocked(&self) -> bool {
        self.action == Action::Block
    }

    /// Whether one of the reasons is `code`.
    pub fn names(&self, code: ReasonCode) -> bool {
        self.reasons.iter().any(|reason| reason.code == code)
    }
}

/// What a policy does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Nothing is judged, nothing recorded.
    Off,
    /// The code goes; what the policy would have done is recorded.
    Monitor,
    /// The policy refuses codes. Every policy's default, as managed fraud guards are on by
    /// default: a service is exposed from its first code.
    #[default]
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Monitor => "monitor",
            Mode::Enforce => "enforce",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = UnknownName;

    /// `off`, `monitor` or `enforce`, in any case (`FRAUD_MODE=Monitor`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Mode::Off),
            "monitor" => Ok(Mode::Monitor),
            "enforce" => Ok(Mode::Enforce),
            _ => Err(UnknownName::new("fraud mode", text)),
        }
    }
}

/// One of the guard's policies, each with its own [`Mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    PrefixConversion,
    PrefixSurge,
    /// Today's pumping alarm (`PUMPING_*`), per calling code.
    CountrySurge,
    LineType,
    IpVelocity,
    Budget,
    ManualBlock,
}

impl Policy {
    pub const ALL: [Policy; 7] = [
        Policy::PrefixConversion,
        Policy::PrefixSurge,
        Policy::CountrySurge,
        Policy::LineType,
        Policy::IpVelocity,
        Policy::Budget,
        Policy::ManualBlock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::PrefixConversion => "prefix_conversion",
            Policy::PrefixSurge => "prefix_surge",
            Policy::CountrySurge => "country_surge",
            Policy::LineType => "line_type",
            Policy::IpVelocity => "ip_velocity",
            Policy::Budget => "budget",
            Policy::ManualBlock => "manual_block",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let name = text.trim().to_ascii_lowercase();
        Policy::ALL
            .into_iter()
            .find(|policy| policy.as_str() == name)
            .ok_or_else(|| UnknownName::new("fraud policy", text))
    }
}

/// The mode of every policy; all [`Mode::Enforce`] by default. Serialised as a map from
/// policy name to mode (`{"prefix_conversion": "enforce", ...}`), the admin API's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    modes: [Mode; Policy::ALL.len()],
}

impl Default for Policies {
    fn default() -> Self {
        Self::all(Mode::Enforce)
    }
}

impl Policies {
    /// Every policy in `mode`: what `FRAUD_MODE` sets.
    pub fn all(mode: Mode) -> Self {
        Self {
            modes: [mode; Policy::ALL.len()],
        }
    }

    pub fn mode(&self, policy: Policy) -> Mode {
        self.modes[policy.index()]
    }

    pub fn set(&mut self, policy: Policy, mode: Mode) {
        self.modes[policy.index()] = mode;
    }

    pub fn with(mut self, policy: Policy, mode: Mode) -> Self {
        self.set(policy, mode);
        self
    }

    /// Whether `policy` is judged at all.
    pub fn is_on(&self, policy: Policy) -> bool {
        self.mode(policy) != Mode::Off
    }

    pub fn iter(&self) -> impl Iterator<Item = (Policy, Mode)> + '_ {
        Policy::ALL
            .into_iter()
            .map(|policy| (policy, self.mode(policy)))
    }

    /// `FRAUD_MODE` (all policies at once, when set) and then each policy's own setting, which
    /// wins: `FRAUD_MODE=monitor` with `prefix_surge=enforce` watches all but that one.
    pub fn configured(all: Option<Mode>, each: impl IntoIterator<Item = (Policy, Mode)>) -> Self {
        let mut policies = Self::all(all.unwrap_or_default());
        for (policy, mode) in each {
            policies.set(policy, mode);
        }
        policies
    }
}

impl Serialize for Policies {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(Policy::ALL.len()))?;
        for (policy, mode) in self.iter() {
            map.serialize_entry(policy.as_str(), &mode)?;
        }
        map.end()
    }
}

/// A map of some policies' modes; those it leaves out keep the default.
impl<'de> Deserialize<'de> for Policies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<Policy, Mode>::deserialize(deserializer)?;
        Ok(Self::configured(None, map))
    }
}

/// A name that is none of the ones a setting takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a {kind}")]
pub struct UnknownName {
    kind: &'static str,
    name: String,
}

impl UnknownName {
    fn new(kind: &'static str, name: &str) -> Self {
        Self {
            kind,
            name: name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: ReasonCode) -> Reason {
        Reason::new(code, format!("{code} found"))
    }

    #[test]
    fn a_decision_serialises_as_action_and_reasons_with_code_and_detail() {
        let decision = Decision {
            action: Action::Block,
            reasons: vec![Reason::new(
                ReasonCode::PrefixLowConversion,
                "0 of 40 codes to +447700900 checked",
            )],
        };
        let json = serde_json::to_value(&decision).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "action": "block",
                "reasons": [{
                    "code": "prefix_low_conversion",
                    "detail": "0 of 40 codes to +447700900 checked"
                }]
            })
        );
        assert_eq!(serde_json::from_value::<Decision>(json).unwrap(), decision);
        assert_eq!(
            serde_json::to_value(Decision::allow()).unwrap(),
            serde_json::json!({"action": "allow", "reasons": []})
        );
    }

    #[test]
    fn every_reason_code_reads_back_from_its_name() {
        let names: Vec<&str> = ReasonCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(
            names,
            [
                "prefix_low_conversion",
                "prefix_surge",
                "country_surge",
                "line_type",
                "ip_velocity",
                "budget_exhausted",
                "manual_block"
            ]
        );
        for code in ReasonCode::ALL {
            assert_eq!(code.as_str().parse::<ReasonCode>(), Ok(code));
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
        assert!("pumping".parse::<ReasonCode>().is_err());
    }

    #[test]
    fn an_enforced_finding_blocks_a_monitored_one_is_recorded_an_off_one_is_dropped() {
        let policies = Policies::default()
            .with(Policy::PrefixSurge, Mode::Monitor)
            .with(Policy::CountrySurge, Mode::Off);

        let monitored = Decision::from_findings(vec![reason(ReasonCode::PrefixSurge)], &policies);
        assert_eq!(monitored.action, Action::Monitor);
        assert!(monitored.names(ReasonCode::PrefixSurge));

        let dropped = Decision::from_findings(vec![reason(ReasonCode::CountrySurge)], &policies);
        assert_eq!(dropped, Decision::allow());

        let blocked = Decision::from_findings(
            vec![
                reason(ReasonCode::PrefixSurge),
                reason(ReasonCode::CountrySurge),
                reason(ReasonCode::PrefixLowConversion),
            ],
            &policies,
        );
        assert_eq!(blocked.action, Action::Block);
        // The monitored finding still explains; the one that is off does not appear.
        assert_eq!(
            blocked
                .reasons
                .iter()
                .map(|reason| reason.code)
                .collect::<Vec<_>>(),
            [ReasonCode::PrefixSurge, ReasonCode::PrefixLowConversion]
        );
    }

    #[test]
    fn every_policy_is_enforced_by_default_and_fraud_mode_sets_them_all() {
        for policy in Policy::ALL {
            assert_eq!(Policies::default().mode(policy), Mode::Enforce);
            assert_eq!(Policies::all(Mode::Monitor).mode(policy), Mode::Monitor);
        }
        let mode: Mode = " Monitor ".parse().unwrap();
        let policies = Policies::configured(Some(mode), [(Policy::LineType, Mode::Enforce)]);
        assert_eq!(policies.mode(Policy::PrefixConversion), Mode::Monitor);
        assert_eq!(policies.mode(Policy::LineType), Mode::Enforce);
        assert!("loud".parse::<Mode>().is_err());
        assert_eq!("country_surge".parse::<Policy>(), Ok(Policy::CountrySurge));
    }

    #[test]
    fn policies_serialise_as_a_map_and_read_back_with_defaults_for_the_rest() {
        let policies = Policies::all(Mode::Off).with(Policy::Budget, Mode::Monitor);
        let json = serde_json::to_value(policies).unwrap();
        assert_eq!(json["budget"], "monitor");
        assert_eq!(json["prefix_conversion"], "off");
        assert_eq!(json.as_object().unwrap().len(), Policy::ALL.len());
        assert_eq!(serde_json::from_value::<Policies>(json).unwrap(), policies);

        let partial: Policies =
            serde_json::from_value(serde_json::json!({"line_type": "monitor"})).unwrap();
        assert_eq!(partial.mode(Policy::LineType), Mode::Monitor);
        assert_eq!(partial.mode(Policy::PrefixSurge), Mode::Enforce);
        assert!(serde_json::from_value::<Policies>(serde_json::json!({"pumping": "off"})).is_err());
    }
}
