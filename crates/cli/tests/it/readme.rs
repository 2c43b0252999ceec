use crate::support::Operator;
