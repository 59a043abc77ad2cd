//! The `spbridge` command line: the binary edge, where `anyhow` lives.
fn main() -> anyhow::Result<()> {
    Ok(())
}
