//! Conformance tests every store adapter runs. (Filled in with the store adapters.)
