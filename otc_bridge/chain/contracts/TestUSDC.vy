# pragma version 0.4.3
# pragma evm-version cancun
# pragma optimize gas
"""
@title Test USDC: a plain 6-decimal ERC-20 for dev chains and tests
@license MIT
@notice Anyone may mint. Never deploy this where its tokens could be mistaken for value.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

NAME: constant(String[32]) = "Test USD Coin"
SYMBOL: constant(String[8]) = "USDC"
DECIMALS: constant(uint8) = 6

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)


@view
@external
def name() -> String[32]:
    return NAME


@view
@external
def symbol() -> String[8]:
    return SYMBOL


@view
@external
def decimals() -> uint8:
    return DECIMALS


@external
def transfer(_to: address, _value: uint256) -> bool:
    self._move(msg.sender, _to, _value)
    return True


@external
def transferFrom(_from: address, _to: address, _value: uint256) -> bool:
    allowed: uint256 = self.allowance[_from][msg.sender]
    assert allowed >= _value, "allowance too low"
    # An allowance of 2**256 - 1 is never spent down (the common "infinite approval").
    if allowed != max_value(uint256):
        self.allowance[_from][msg.sender] = allowed - _value
    self._move(_from, _to, _value)
    return True


@external
def approve(_spender: address, _value: uint256) -> bool:
    self.allowance[msg.sender][_spender] = _value
    log Approval(owner=msg.sender, spender=_spender, value=_value)
    return True


@external
def mint(_to: address, _value: uint256):
    """
    @notice Create `_value` base units (1 USDC = 10**6) for `_to`. Open to anyone.
    """
    assert _to != empty(address), "mint to zero"
    self.totalSupply += _value
    self.balanceOf[_to] += _value
    log Transfer(sender=empty(address), receiver=_to, value=_value)


@internal
def _move(_from: address, _to: address, _value: uint256):
    assert _to != empty(address), "transfer to zero"
    assert self.balanceOf[_from] >= _value, "balance too low"
    self.balanceOf[_from] -= _value
    self.balanceOf[_to] += _value
    log Transfer(sender=_from, receiver=_to, value=_value)
