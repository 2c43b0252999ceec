//! The `template` fuzz target (see the crate's documentation and `fuzz::template`).

fn main() {
    fuzz::main(fuzz::template::run);
}
