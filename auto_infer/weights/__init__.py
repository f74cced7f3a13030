"""Model weights as part of the offline contract: where they come from (spec), how warm gets them
(fetch), and the audit install and serve run before anything starts (audit). Imports only core."""
