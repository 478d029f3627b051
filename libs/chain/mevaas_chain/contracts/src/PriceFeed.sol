// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Devnet price feed with the Chainlink aggregator surface Aave's AaveOracle reads
/// @notice The devnet's market simulator is its only updater: each update is a mined transaction
/// that emits Chainlink's AnswerUpdated, so price moves are ordered, reorgable chain history.
contract PriceFeed {
    address public immutable owner;
    uint8 public constant decimals = 8;
    int256 public latestAnswer;
    uint256 public latestRound;
    uint256 public latestTimestamp;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    constructor(address owner_, int256 answer) {
        owner = owner_;
        _set(answer);
    }

    function setAnswer(int256 answer) external {
        require(msg.sender == owner, "not owner");
        _set(answer);
    }

    function _set(int256 answer) private {
        require(answer > 0, "price must be positive");
        latestAnswer = answer;
        latestRound += 1;
        latestTimestamp = block.timestamp;
        emit AnswerUpdated(answer, latestRound, block.timestamp);
    }
}
