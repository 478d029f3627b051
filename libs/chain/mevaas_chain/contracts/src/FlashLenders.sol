// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// Lenders of the executor's flash cycles beyond the Uniswap V2 flash swap and Aave V3: a
/// Uniswap V3 pool's `flash` (the pool's other functions: IUniswapV3PoolMinimal) and the
/// Balancer V2 vault's `flashLoan`.

interface IUniswapV3FlashPool {
    function flash(address recipient, uint256 amount0, uint256 amount1, bytes calldata data) external;
}

interface IBalancerVaultFlashLoans {
    function flashLoan(
        address recipient,
        address[] calldata tokens,
        uint256[] calldata amounts,
        bytes calldata userData
    ) external;
}
