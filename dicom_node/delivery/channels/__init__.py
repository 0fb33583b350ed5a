"""Where progression alerts go: webhooks, e-mail, HL7 v2 over MLLP."""


class DeliveryError(Exception):
    """The channel did not take the alert; the message says why (it is retried)."""
