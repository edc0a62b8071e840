//! The attack suite: one module per class of attack on the administration and its channels.
//! Every case must be refused; each class prints `attack tally: class=… tried=N refused=N`
//! (see `lockgate_tests::attack::Tally`). Threat model and the test proving each claim:
//! `docs/security.md`.
mod mqtt_commands;
