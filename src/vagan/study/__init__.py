"""vagan study: presets x seeds trained with equal budgets on one dataset, evaluated together with intervals."""
