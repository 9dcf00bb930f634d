# pragma version 0.4.3
# pragma evm-version cancun
# pragma optimize gas
"""
@title Test only: an ERC-20 that burns 1 % of every transfer and returns no bool
@notice Holds the HTLC to recording what it received, and to accepting tokens whose
        transfer functions return nothing (as some early tokens do).
"""

FEE_BPS: public(constant(uint256)) = 100

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
totalSupply: public(uint256)


@external
def transfer(_to: address, _value: uint256):
    self._move(msg.sender, _to, _value)


@external
def transferFrom(_from: address, _to: address, _value: uint256):
    assert self.allowance[_from][msg.sender] >= _value, "allowance too low"
    self.allowance[_from][msg.sender] -= _value
    self._move(_from, _to, _value)


@external
def approve(_spender: address, _value: uint256):
    self.allowance[msg.sender][_spender] = _value


@external
def mint(_to: address, _value: uint256):
    self.totalSupply += _value
    self.balanceOf[_to] += _value


@internal
def _move(_from: address, _to: address, _value: uint256):
    fee: uint256 = _value * FEE_BPS // 10000
    self.balanceOf[_from] -= _value
    self.balanceOf[_to] += _value - fee
    self.totalSupply -= fee
    log Transfer(sender=_from, receiver=_to, value=_value - fee)
