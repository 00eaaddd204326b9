mod config_rules;
