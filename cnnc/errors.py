"""One error hierarchy for every stage; each error names where the problem is."""
from __future__ import annotations

from .source import Span


class CnncError(Exception):
    """Base of every error cnnc reports to a user.

    `str(error)` is the complete message: location first (`file:line:col`, or the parameter or
    layer concerned), then what is wrong, then the offending source line with a caret.
    """

    def __init__(self, message: str, span: Span | None = None, where: str | None = None):
        self.message = message
        self.span = span
        self.where = where
        super().__init__(self.render())

    def render(self) -> str:
        if self.span is not None:
            return f"{self.span.location}: error: {self.message}\n{self.span.excerpt()}"
        if self.where:
            return f"{self.where}: error: {self.message}"
        return f"error: {self.message}"


class CnncErrors(CnncError):
    """Several independent errors in one program (elaboration recovers at each statement).

    `errors` holds them in the order of their statements; `str()` is each one's message, in the
    usual form, then a line counting them. `message`, `span` and `where` are the first error's.
    A program with one error raises that error itself, never this.
    """

    errors: list[CnncError]

    def __init__(self, errors: list[CnncError]):
        self.errors = [e for error in errors for e in (error.errors if isinstance(error, CnncErrors) else [error])]
        first = self.errors[0]
        super().__init__(first.message, first.span, first.where)

    def render(self) -> str:
        return "\n".join([*(str(error) for error in self.errors), f"{len(self.errors)} errors"])


class CnncWarning(UserWarning):
    """Something in the program that compiles but is likely a mistake (a value never used).

    Given with `warnings.warn`; `str()` is `file:line:col: warning: message` and the caret
    excerpt, like an error's. `message` and `span` are its parts.
    """

    def __init__(self, message: str, span: Span):
        self.message = message
        self.span = span
        super().__init__(f"{span.location}: warning: {message}\n{span.excerpt()}")


class CnncSyntaxError(CnncError):
    """The text does not follow the grammar."""


class CnncNameError(CnncError):
    """An undefined or duplicate name (value, block, op, layer)."""


class CnncTypeError(CnncError):
    """A value of the wrong kind: a float where an int is needed, a tensor where a number is."""


class CnncShapeError(CnncError):
    """Shapes that do not fit: mismatched `+`, concat of different sizes, a kernel larger than its input."""


class CnncImportError(CnncError):
    """A file that cannot be read or an `import` cycle."""


class CnncParamError(CnncError):
    """A parameter file or mapping that does not match the network (missing name, wrong shape)."""


class CnncInputError(CnncError):
    """An input given at run time that does not match the network's declared inputs."""


class CnncIRError(CnncError):
    """A broken IR invariant: a bug in cnnc itself, never the user's fault."""
