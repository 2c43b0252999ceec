//! The `status_callback` fuzz target (see the crate's documentation and `fuzz::status_callback`).

fn main() {
    fuzz::main(fuzz::status_callback::run);
}
