//! Known models: context window and maximum output tokens (PERSTACK-COMPAT.md §7).

/// What we know about a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelInfo {
    /// Context window in tokens.
    pub context_window: u64,
    /// Maximum output tokens per generation.
    pub max_output: u64,
}

const TABLE: &[(&str, u64, u64)] = &[
    ("claude-opus-4-5", 200_000, 32_000),
    ("claude-opus-4-1", 200_000, 32_000),
    ("claude-opus-4-20250514", 200_000, 32_000),
    ("claude-sonnet-4-5", 200_000, 64_000),
    ("claude-sonnet-4-20250514", 200_000, 64_000),
    ("claude-3-7-sonnet-20250219", 200_000, 64_000),
    ("claude-haiku-4-5", 200_000, 8_192),
    ("claude-3-5-haiku-latest", 200_000, 8_192),
    ("gemini-3-pro-preview", 1_048_576, 65_536),
    ("gemini-2.5-pro", 1_048_576, 65_536),
    ("gemini-2.5-flash", 1_048_576, 65_536),
    ("gemini-2.5-flash-lite", 1_048_576, 65_536),
    ("gpt-5", 400_000, 128_000),
    ("gpt-5-mini", 400_000, 128_000),
    ("gpt-5-nano", 400_000, 128_000),
    ("gpt-5-chat-latest", 128_000, 16_384),
    ("o4-mini", 200_000, 100_000),
    ("o3", 200_000, 10_000),
    ("o3-mini", 200_000, 10_000),
    ("gpt-4.1", 1_047_576, 32_768),
    ("deepseek-chat", 128_000, 8_192),
    ("deepseek-reasoner", 128_000, 64_000),
    ("gpt-oss:20b", 131_072, 131_072),
    ("gpt-oss:120b", 131_072, 131_072),
    ("gemma3:1b", 32_000, 32_000),
    ("gemma3:4b", 128_000, 128_000),
    ("gemma3:12b", 128_000, 128_000),
    ("gemma3:27b", 128_000, 128_000),
];

/// The model's limits, if it is in Perstack's table.
pub(crate) fn lookup(model: &str) -> Option<ModelInfo> {
    TABLE
        .iter()
        .find(|(name, _, _)| *name == model)
        .map(|&(_, context_window, max_output)| ModelInfo {
            context_window,
            max_output,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_models() {
        assert_eq!(
            lookup("claude-sonnet-4-5"),
            Some(ModelInfo {
                context_window: 200_000,
                max_output: 64_000
            })
        );
        assert_eq!(lookup("my-finetune"), None);
    }
}
