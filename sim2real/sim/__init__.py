"""Layer 2, simulation: the VecEnv contract, the task registry, the engines and the robot-shared observation builders."""
