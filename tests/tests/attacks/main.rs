//! The attack suite: one module per class of attack on the administration and its channels.
//! Every case must be refused; each class prints `attack tally: class=… tried=N refused=N`
//! (see `lockgate_tests::attack::Tally`). Threat model and the test proving each claim:
//! `docs/security.md`.

mod common;

mod c_key_targets;
mod domains;
mod gateway_ops;
mod hidden_persons;
mod ldap_dn;
mod licence;
mod mqtt_commands;
mod permissions;
mod plugin_cache;
mod plugin_exhaustion;
mod settings_race;
mod ssrf;
mod tokens;
mod transport;
mod web_services;
