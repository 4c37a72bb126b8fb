"""The rdbench leaderboard: a Streamlit app over a folder of validated result files."""
