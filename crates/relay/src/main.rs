fn main() {
    eprintln!(
        "tandem-relay: not implemented yet (it would listen on {})",
        tandem_relay::DEFAULT_LISTEN
    );
    std::process::exit(2);
}
