"""The control plane's errors, one tree (api/ maps each to an HTTP status in one table)."""


class BalancerError(Exception):
    """Base of the control plane's errors (the service's and the controller's).

    BalancerError
    ├── NotFound        the VIP or backend does not exist
    ├── AlreadyExists   the VIP or backend is already there
    ├── CapacityError   a size limit (VIPs, backends) is reached
    └── InvalidInput    a value the data plane cannot take
    """


class NotFound(BalancerError):
    pass


class AlreadyExists(BalancerError):
    pass


class CapacityError(BalancerError):
    pass


class InvalidInput(BalancerError):
    pass
