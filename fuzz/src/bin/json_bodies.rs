//! The `json_bodies` fuzz target (see the crate's documentation and `fuzz::json_bodies`).

fn main() {
    fuzz::main(fuzz::json_bodies::run);
}
