//! The `phone` fuzz target (see the crate's documentation and `fuzz::phone`).

fn main() {
    fuzz::main(fuzz::phone::run);
}
