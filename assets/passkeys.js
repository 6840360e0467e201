// Placeholder: replaced by the passkey sign-in script.
