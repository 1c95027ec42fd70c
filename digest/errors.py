"""The one error hierarchy whose messages the CLI and web app show to users as they are."""


class DigestError(Exception):
    """A problem the user can act on; the message names the thing and the fix."""


class ConfigError(DigestError):
    """The configuration file is missing, unreadable or holds a bad value."""


class StoreError(DigestError):
    """The database cannot be opened or is in a state we cannot work with."""


class SourceError(DigestError):
    """A feed or story file could not be read or parsed."""


class TemplateError(DigestError):
    """A template is missing or does not render; names its file and line when known."""

    def __init__(self, message: str, template: str | None = None, line: int | None = None):
        super().__init__(message)
        self.template = template
        self.line = line


class SubscriberError(DigestError):
    """A subscriber address, time zone or status is not acceptable."""


class NotFoundError(DigestError):
    """A story, subscriber, newsletter or edition named by the user does not exist."""


class TransportError(DigestError):
    """Mail could not be handed to the transport."""


class LeaseHeldError(DigestError):
    """Another process holds the lease for this work."""


class SendRejectedError(TransportError):
    """The provider refused a batch for its content (HTTP 400/413): sending it again won't help.

    `rejected` holds the positions (in the batch) of the readers the provider named, when
    it named them all: the others were refused only for their company.
    """

    def __init__(self, message: str, rejected: tuple[int, ...] = ()):
        super().__init__(message)
        self.rejected = rejected


class TransportAuthError(TransportError):
    """The provider refused our credentials (HTTP 401/403): the whole run must stop."""


class DeliveryUnknownError(TransportError):
    """The request left but no answer came back: the provider may or may not have accepted it."""


class SlotHeldError(DigestError):
    """A slot an editor holds: nothing goes to its readers until it is released."""
